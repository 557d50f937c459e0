package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

const numPhases = 2

// phase counts one message phase. Every send adds two pending events (its
// ack and its delivery); each ack, delivery or error takes its share off.
// Once the phase is stopping, the event that brings pending to zero closes
// drained: that is the signal that everything sent has come back.
type phase struct {
	idx        int
	letter     byte // first byte of the phase's refs
	closedLoop bool // each ack triggers the next send

	stopping atomic.Bool
	pending  atomic.Int64
	drained  chan struct{}
	once     sync.Once

	sent, acked, delivered, dups, writeErrs atomic.Int64
	dupDeliveries                           atomic.Int64 // msg frames of a message delivered before

	errMu    sync.Mutex
	errCodes map[string]int64
}

func newPhase(idx int, letter byte, closedLoop bool) *phase {
	return &phase{idx: idx, letter: letter, closedLoop: closedLoop,
		drained: make(chan struct{}), errCodes: map[string]int64{}}
}

// done takes n pending events off.
func (p *phase) done(n int64) {
	if p.pending.Add(-n) == 0 && p.stopping.Load() {
		p.once.Do(func() { close(p.drained) })
	}
}

// stop ends sending. In a closed loop an ack handler checks stopping
// before it sends, and its own ack is still pending while it does, so
// pending cannot reach zero early.
func (p *phase) stop() {
	p.stopping.Store(true)
	if p.pending.Load() == 0 {
		p.once.Do(func() { close(p.drained) })
	}
}

// drain waits until every send of p is acked (or refused) and delivered,
// for at most d. It reports whether it gave up.
func (p *phase) drain(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.drained:
		return false
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

func (p *phase) countErr(code string) {
	p.errMu.Lock()
	p.errCodes[code]++
	p.errMu.Unlock()
}

func (p *phase) errorCounts() (map[string]int64, int64) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	m := make(map[string]int64, len(p.errCodes))
	var total int64
	for k, v := range p.errCodes {
		m[k] = v
		total += v
	}
	return m, total
}

// onAck handles an ack on sender c. In a closed loop the next send goes
// out before this ack's pending event is taken off (see stop).
func (b *bench) onAck(c *client, v *view) {
	p := b.phaseOfRef(v.ref)
	if p == nil {
		b.unexpected.Add(1)
		return
	}
	if v.dup {
		// A duplicate is not delivered again. It cannot happen with
		// this tool's unique refs; counted to show if it does.
		p.dups.Add(1)
		p.done(2)
		return
	}
	p.acked.Add(1)
	if p.closedLoop && !p.stopping.Load() {
		c.send(p, time.Now().UnixNano())
	}
	p.done(1)
}

// phaseOfRef maps a ref to its phase by its first byte.
func (b *bench) phaseOfRef(ref []byte) *phase {
	if len(ref) == 0 {
		return nil
	}
	for _, p := range b.phases {
		if p.letter == ref[0] {
			return p
		}
	}
	return nil
}

// phaseOfT maps a message to its phase by its timestamp: phase B stamps
// are never earlier than phase B's start, phase A's always are. This way a
// late phase A delivery is never counted as phase B.
func (b *bench) phaseOfT(t int64) *phase {
	if t >= b.bStart.Load() {
		return b.phases[1]
	}
	return b.phases[0]
}
