package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// phaseResult is one message phase's part of the report.
type phaseResult struct {
	Name       string  `json:"name"`
	Mode       string  `json:"mode"`
	Senders    int     `json:"senders"`
	Window     int     `json:"window,omitempty"`
	TargetRate float64 `json:"target_rate,omitempty"`
	Seconds    float64 `json:"seconds"`

	// In the measured window: from the first send to the end of sending.
	Sent              int64   `json:"sent"`
	StoredInWindow    int64   `json:"stored_in_window"`
	StoredPerS        float64 `json:"stored_per_s"`
	DeliveredInWindow int64   `json:"delivered_in_window"`
	DeliveredPerS     float64 `json:"delivered_per_s"`

	// After the drain: everything that came back.
	Stored        int64            `json:"stored"`
	Delivered     int64            `json:"delivered"`
	NotDelivered  int64            `json:"not_delivered"`
	Errors        map[string]int64 `json:"errors,omitempty"`
	WriteErrors   int64            `json:"write_errors,omitempty"`
	Dups          int64            `json:"dup_acks,omitempty"`
	DupDeliveries int64            `json:"dup_deliveries,omitempty"` // same message delivered again
	DrainSeconds  float64          `json:"drain_seconds"`
	DrainTimedOut bool             `json:"drain_timed_out,omitempty"`

	Latency  *latency  `json:"latency_ms,omitempty"`
	SchedLag *latency  `json:"sched_lag_ms,omitempty"`
	NodeCPU  float64   `json:"node_cpu_cores,omitempty"`      // in a cluster, all nodes together
	NodesCPU []float64 `json:"node_cpu_cores_each,omitempty"` // in a cluster, n0, n1, …
	BenchCPU float64   `json:"bench_cpu_cores"`
	OtherCPU float64   `json:"other_cpu_cores"` // every other process on the machine
}

// cpuMark is a point to measure CPU use from.
type cpuMark struct {
	at         time.Time
	self, busy time.Duration
	nodes      []time.Duration // each node's, as bench.nodes
}

func (b *bench) cpuMark() cpuMark {
	m := cpuMark{at: time.Now(), self: selfCPU(), busy: machineBusy(),
		nodes: make([]time.Duration, len(b.nodes))}
	for i, n := range b.nodes {
		if n.pid != 0 {
			m.nodes[i], _ = procCPU(n.pid)
		}
	}
	return m
}

// cores sets the average number of cores the nodes, this tool and
// everything else used from m to now. Without a node pid, the node counts
// as "other".
func (m cpuMark) cores(now cpuMark, r *phaseResult) {
	wall := now.at.Sub(m.at).Seconds()
	var node time.Duration
	for i := range m.nodes {
		d := now.nodes[i] - m.nodes[i]
		node += d
		if len(m.nodes) > 1 {
			r.NodesCPU = append(r.NodesCPU, d.Seconds()/wall)
		}
	}
	self := now.self - m.self
	r.NodeCPU, r.BenchCPU = node.Seconds()/wall, self.Seconds()/wall
	r.OtherCPU = max(0, (now.busy-m.busy-node-self).Seconds()/wall)
}

// phaseA is the capacity phase: each sender keeps --window sends
// outstanding, sending the next as soon as an ack comes back.
func (b *bench) phaseA(ctx context.Context) *phaseResult {
	p := b.phases[0]
	r := &phaseResult{Name: "A", Mode: "closed loop", Senders: len(b.pairs), Window: b.cfg.Window}
	mark := b.cpuMark()
	// Window slot by slot, so every sender is under way early.
	for range b.cfg.Window {
		for _, pr := range b.pairs {
			pr.sender.send(p, time.Now().UnixNano())
		}
	}
	sleepCtx(ctx, b.cfg.Duration-time.Since(mark.at))
	b.endWindow(p, r, mark)
	b.finish(ctx, p, r)
	return r
}

// phaseB is the latency phase: an open loop at rate messages/s in all,
// each sender sending at rate/senders, evenly spaced, whatever the acks do.
func (b *bench) phaseB(ctx context.Context, rate float64) *phaseResult {
	p := b.phases[1]
	r := &phaseResult{Name: "B", Mode: "open loop", Senders: len(b.pairs), TargetRate: rate}
	start := time.Now().Add(5 * time.Millisecond) // room for the pacers to start
	b.bStart.Store(start.UnixNano())
	// A few pacers rather than one goroutine per sender: fewer wakeups
	// on a machine the node shares. Each drives a slice of the senders,
	// offset so that together their sends interleave evenly.
	shards := min(4, len(b.pairs))
	lags := make([][]int64, shards)
	mark := b.cpuMark()
	var wg sync.WaitGroup
	for k := range shards {
		lo, hi := k*len(b.pairs)/shards, (k+1)*len(b.pairs)/shards
		share := rate * float64(hi-lo) / float64(len(b.pairs))
		at := start.Add(time.Duration(float64(k) * float64(time.Second) / rate))
		wg.Go(func() { lags[k] = b.pace(ctx, p, b.pairs[lo:hi], share, at) })
	}
	wg.Wait()
	mark.at = start
	b.endWindow(p, r, mark)
	b.finish(ctx, p, r)
	r.SchedLag = summarize(slices.Concat(lags...))
	return r
}

// pace sends rate messages/s for --duration from start, round robin over
// pairs. Each message is stamped with the time it was due, not the time
// it went out, so a client that falls behind shows up as latency rather
// than hiding it (coordinated omission); how far behind is returned, one
// value per message, in ns.
func (b *bench) pace(ctx context.Context, p *phase, pairs []pair, rate float64, start time.Time) []int64 {
	total := int64(rate * b.cfg.Duration.Seconds())
	interval := float64(time.Second) / rate
	lags := make([]int64, 0, total)
	t0 := start.UnixNano()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for j := range total {
		due := t0 + int64(float64(j)*interval)
		if wait := due - time.Now().UnixNano(); wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-ctx.Done():
				return lags
			case <-timer.C:
			}
		} else if j%256 == 0 && ctx.Err() != nil {
			return lags // behind schedule and interrupted
		}
		lags = append(lags, time.Now().UnixNano()-due)
		pairs[j%int64(len(pairs))].sender.send(p, due)
	}
	return lags
}

// endWindow stops sending and takes the in-window counts.
func (b *bench) endWindow(p *phase, r *phaseResult, mark cpuMark) {
	p.stop()
	now := b.cpuMark()
	r.Seconds = now.at.Sub(mark.at).Seconds()
	r.Sent = p.sent.Load()
	r.StoredInWindow, r.DeliveredInWindow = p.acked.Load(), p.delivered.Load()
	r.StoredPerS = float64(r.StoredInWindow) / r.Seconds
	r.DeliveredPerS = float64(r.DeliveredInWindow) / r.Seconds
	mark.cores(now, r)
}

// finish waits for outstanding acks and deliveries, then takes the totals.
func (b *bench) finish(ctx context.Context, p *phase, r *phaseResult) {
	start := time.Now()
	r.DrainTimedOut = p.drain(ctx, b.cfg.Drain)
	r.DrainSeconds = time.Since(start).Seconds()
	r.Sent = p.sent.Load()
	r.Stored, r.Delivered = p.acked.Load(), p.delivered.Load()
	r.NotDelivered = r.Sent - r.Delivered
	r.WriteErrors, r.Dups, r.DupDeliveries = p.writeErrs.Load(), p.dups.Load(), p.dupDeliveries.Load()
	r.Errors, _ = p.errorCounts()
	r.Latency = summarize(b.latencies(p.idx))
}

// latencies gathers the recipients' delivery latencies of one phase.
func (b *bench) latencies(idx int) []int64 {
	var all []int64
	for _, pr := range b.pairs {
		c := pr.recipient
		c.mu.Lock()
		all = append(all, c.lat[idx]...)
		c.mu.Unlock()
	}
	return all
}

// sleepCtx waits d or until ctx ends. It times measurement windows; it
// is not used to wait for events.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
