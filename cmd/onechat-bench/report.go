package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is everything a run found; it is printed as text and, with
// --json, as JSON.
type report struct {
	Tool        string              `json:"tool"`
	Started     time.Time           `json:"started"`
	Args        []string            `json:"args"`
	Params      map[string]any      `json:"params"`
	Machine     machine             `json:"machine"`
	Node        *nodeInfo           `json:"node,omitempty"`
	Nodes       []nodeInfo          `json:"nodes,omitempty"` // with --cluster, instead of node
	Connect     *connectResult      `json:"connect,omitempty"`
	Memory      *memResult          `json:"memory,omitempty"`
	ClusterMem  *clusterMem         `json:"cluster_memory,omitempty"` // with --cluster, instead of memory
	Stream      []streamStat        `json:"inbox_stream,omitempty"`   // with --cluster
	PhaseA      *phaseResult        `json:"phase_a,omitempty"`
	PhaseB      *phaseResult        `json:"phase_b,omitempty"`
	Dropped     map[string]dropStat `json:"dropped_connections,omitempty"`
	OtherErrors map[string]int64    `json:"other_errors,omitempty"`
	Stray       int64               `json:"stray_msgs,omitempty"`
	Unexpected  int64               `json:"unexpected_frames,omitempty"`
	Notes       []string            `json:"notes,omitempty"`
	Interrupted bool                `json:"interrupted,omitempty"`
	Error       string              `json:"error,omitempty"`
}

// memResult is the idle-memory part of the report.
type memResult struct {
	Before        procMem `json:"before"`
	After         procMem `json:"after"`
	SettleSeconds float64 `json:"settle_seconds"`
	Connections   int     `json:"connections"`
	DeltaBytes    int64   `json:"rss_delta_bytes"`
	BytesPerConn  float64 `json:"rss_bytes_per_conn"`
	AnonPerConn   float64 `json:"rss_anon_bytes_per_conn"`
	NodeFDs       int     `json:"node_open_files,omitempty"`
}

// collect copies the run-wide counters into the report.
func (r *report) collect(b *bench) {
	r.Dropped, r.OtherErrors = b.counts()
	r.Stray, r.Unexpected = b.stray.Load(), b.unexpected.Load()
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "\nonechat-bench %s\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "  command:  %s\n", strings.Join(r.Args, " "))
	m := r.Machine
	fmt.Fprintf(w, "  machine:  nproc %d, GOMAXPROCS %d, %s %s, kernel %s, %s, mem %s, "+
		"bench fd limit %d, loadavg at start %s\n",
		m.NProc, m.GOMAXPROCS, m.GoVersion, m.OS, m.Kernel, m.CPU, m.MemTotal, m.FDLimit, m.LoadAvg)
	r.textNode(w)
	r.textClusterNodes(w)
	r.textConnect(w)
	r.textMemory(w)
	r.textClusterMemory(w)
	for _, p := range []*phaseResult{r.PhaseA, r.PhaseB} {
		if p != nil {
			textPhase(w, p)
		}
	}
	r.textStream(w)
	r.textAnomalies(w)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	switch {
	case r.Interrupted:
		fmt.Fprintf(w, "  INTERRUPTED: figures above are partial\n")
	case r.Error != "":
		fmt.Fprintf(w, "  ERROR: %s\n", r.Error)
	}
}

func (r *report) textNode(w io.Writer) {
	n := r.Node
	if n == nil {
		return
	}
	fmt.Fprintf(w, "  node:     %s, pid %d, http %s, version %q, fd limit %d\n",
		n.Mode, n.PID, n.HTTP, n.Version, n.FDLimit)
	if len(n.Args) > 0 {
		fmt.Fprintf(w, "            %s\n", strings.Join(n.Args, " "))
	}
	if n.ExitStatus != "" {
		fmt.Fprintf(w, "            stopped in %.1fs: %s\n", n.StopSeconds, n.ExitStatus)
	}
}

func (r *report) textConnect(w io.Writer) {
	c := r.Connect
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\nconnect:    %d/%d connected in %.2fs = %.0f conn/s; %d failed",
		c.Connected, c.Requested, c.Seconds, c.PerSecond, c.Failed)
	if c.NotTried > 0 {
		fmt.Fprintf(w, ", %d not attempted", c.NotTried)
	}
	if c.NodeFDLimit > 0 && c.FDNode != "" {
		fmt.Fprintf(w, "; open files of the busiest node (%s) %d of %d", c.FDNode, c.NodeFDs, c.NodeFDLimit)
	} else if c.NodeFDLimit > 0 {
		fmt.Fprintf(w, "; node open files %d of %d", c.NodeFDs, c.NodeFDLimit)
	}
	fmt.Fprintln(w)
	for i, k := range c.PerNode {
		fmt.Fprintf(w, "  on n%d: %d\n", i, k)
	}
	writeLatency(w, "  open time", c.OpenTime)
	writeCounts(w, "  failures", c.Failures)
}

func (r *report) textMemory(w io.Writer) {
	m := r.Memory
	if m == nil {
		return
	}
	fmt.Fprintf(w, "idle mem:   node VmRSS %s before, %s after %d connections + %.0fs settle: "+
		"+%s = %.0f B (%.1f KiB) per connection\n",
		mib(m.Before.RSS), mib(m.After.RSS), m.Connections, m.SettleSeconds, mib(m.DeltaBytes),
		m.BytesPerConn, m.BytesPerConn/1024)
	fmt.Fprintf(w, "            RssAnon %.0f B per connection; threads %d -> %d; VmHWM %s\n",
		m.AnonPerConn, m.Before.Threads, m.After.Threads, mib(m.After.HWM))
}

func textPhase(w io.Writer, p *phaseResult) {
	fmt.Fprintf(w, "\nphase %s:    %s, %d senders", p.Name, p.Mode, p.Senders)
	if p.Window > 0 {
		fmt.Fprintf(w, ", window %d", p.Window)
	}
	if p.TargetRate > 0 {
		fmt.Fprintf(w, ", target %.0f msg/s (%.2f msg/s per sender)",
			p.TargetRate, p.TargetRate/float64(p.Senders))
	}
	fmt.Fprintf(w, ", %.2fs\n", p.Seconds)
	fmt.Fprintf(w, "  stored    %.0f msg/s (%d acks in window)\n", p.StoredPerS, p.StoredInWindow)
	fmt.Fprintf(w, "  delivered %.0f msg/s (%d msgs in window)\n", p.DeliveredPerS, p.DeliveredInWindow)
	fmt.Fprintf(w, "  totals    sent %d, stored %d, delivered %d, NOT delivered %d (drain %.2fs%s)\n",
		p.Sent, p.Stored, p.Delivered, p.NotDelivered, p.DrainSeconds, timedOut(p.DrainTimedOut))
	if p.WriteErrors > 0 || p.Dups > 0 || p.DupDeliveries > 0 {
		fmt.Fprintf(w, "  write errors %d, duplicate acks %d, duplicate deliveries %d\n",
			p.WriteErrors, p.Dups, p.DupDeliveries)
	}
	writeCounts(w, "  error frames", p.Errors)
	writeLatency(w, "  latency  ", p.Latency)
	writeLatency(w, "  send lag ", p.SchedLag)
	nodeLabel := "node"
	if len(p.NodesCPU) > 0 {
		nodeLabel = "nodes"
	}
	fmt.Fprintf(w, "  cpu       %s %.2f cores%s, bench %.2f cores, other processes %.2f cores\n",
		nodeLabel, p.NodeCPU, nodesCPU(p), p.BenchCPU, p.OtherCPU)
}

func (r *report) textStream(w io.Writer) {
	if len(r.Stream) > 0 {
		fmt.Fprintln(w)
	}
	for _, s := range r.Stream {
		fmt.Fprintf(w, "inbox stream %s: leader %s; followers %s; %d messages\n",
			s.At, s.Leader, strings.Join(s.Replicas, ", "), s.Messages)
	}
	if len(r.Stream) > 1 && r.PhaseA != nil && r.PhaseB != nil {
		fmt.Fprintf(w, "    (each stored message is kept twice, in both inboxes: 2 × %d stored = %d)\n",
			r.PhaseA.Stored+r.PhaseB.Stored, 2*(r.PhaseA.Stored+r.PhaseB.Stored))
	}
}

func (r *report) textAnomalies(w io.Writer) {
	if len(r.Dropped)+len(r.OtherErrors) > 0 || r.Stray+r.Unexpected > 0 {
		fmt.Fprintln(w)
	}
	if len(r.Dropped) > 0 {
		fmt.Fprintln(w, "connections closed by the node during the run (s since start):")
		for _, k := range slices.Sorted(maps.Keys(r.Dropped)) {
			d := r.Dropped[k]
			fmt.Fprintf(w, "    %6d  %s (first %.1fs, last %.1fs)\n", d.Count, k, d.FirstS, d.LastS)
		}
	}
	writeCounts(w, "error frames outside a phase", r.OtherErrors)
	if r.Stray > 0 {
		fmt.Fprintf(w, "msg frames not from the connection's partner: %d\n", r.Stray)
	}
	if r.Unexpected > 0 {
		fmt.Fprintf(w, "unexpected frames: %d\n", r.Unexpected)
	}
}

func writeLatency(w io.Writer, label string, l *latency) {
	if l == nil {
		return
	}
	fmt.Fprintf(w, "%s p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, "+
		"mean %.2f ms (%d samples)\n",
		label, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.Count)
}

func writeCounts(w io.Writer, label string, m map[string]int64) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", label)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(w, "    %6d  %s\n", m[k], k)
	}
}

func timedOut(b bool) string {
	if b {
		return ", TIMED OUT"
	}
	return ""
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
