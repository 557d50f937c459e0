// Command onechat-bench measures one onechat node, or a cluster of them,
// over WebSocket:
//
//  1. connection rate: -n connections (one user each), -c at a time, spread
//     over source addresses 127.0.0.2 … so local ports do not run out;
//  2. idle memory: the node's VmRSS before connecting and after a settle
//     period, divided by the number of connections;
//  3. phase A, capacity: connection i sends to connection i+n/2 in a closed
//     loop (--window sends outstanding each) for --duration; stored/s is
//     acks per second, delivered/s is msg frames per second at recipients;
//  4. phase B, latency: an open loop at half of phase A's stored/s (or
//     --rate), paced evenly over the senders, for --duration; latency is
//     from the send timestamp in the body to receipt at the recipient.
//
// Usage, from the repository root:
//
//	go build -o onechat ./cmd/onechat && go run ./cmd/onechat-bench -n 10000
//	go run ./cmd/onechat-bench -n 1000 --duration 5s --json > bench.json
//	go run ./cmd/onechat-bench --attach http://127.0.0.1:8080 --pid 1234 --jwt-secret S
//
// By default the tool starts the node itself (--onechat, default ./onechat)
// with a fresh data directory, a random secret, free 127.0.0.1 ports,
// --send-rate -1 and --log-level warn, and stops it with SIGTERM at the end.
// It only ever sends traffic to loopback addresses.
//
// With --cluster 3 it starts three such nodes, n0 n1 n2, as one cluster
// (one shared secret, every route on every node; the inbox stream is then
// replicated R3) and waits for all of them; 4 or 5 nodes work alike. --place cross (the default)
// puts sender i on node i%3 and its recipient on the next node, so every
// message crosses nodes; --place n0 puts every connection on n0, so that
// the memory of n1 and n2, which hold only the remote interest in n0's
// users, gives the cost of a user online on another node:
//
//	go run ./cmd/onechat-bench --cluster 3 -n 6000
//	go run ./cmd/onechat-bench --cluster 3 --place n0 -n 6000
//
// A process here may hold a limited number of open files (see ulimit -n);
// each connection takes one in this tool and one in the node. The tool
// refuses a -n that cannot fit and says so if it hits EMFILE anyway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

var started = time.Now()

// logf prints progress to stderr, stamped with the time since start.
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
}

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "onechat-bench:", err)
		return 2
	}
	// The first Ctrl-C ends the run cleanly (connections closed, node
	// stopped, partial report); stop() then restores the default, so a
	// second one kills the tool at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	rep := &report{Tool: "onechat-bench", Started: started, Args: os.Args,
		Params: cfg.params(), Machine: machineInfo()}
	err = runBench(ctx, cfg, rep)
	rep.Interrupted = ctx.Err() != nil
	if err != nil && !rep.Interrupted {
		rep.Error = err.Error()
	}
	return output(cfg, rep)
}

// output prints the report: text on stdout, or JSON on stdout and text on
// stderr with --json.
func output(cfg *config, rep *report) int {
	text := os.Stdout
	if cfg.JSON {
		text = os.Stderr
		if err := rep.writeJSON(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "onechat-bench: write JSON:", err)
			return 1
		}
	}
	rep.writeText(text)
	if rep.Error != "" || rep.Interrupted {
		return 1
	}
	return 0
}

// runBench runs every step, filling rep as it goes, so an error or
// Ctrl-C still leaves the figures measured so far.
func runBench(ctx context.Context, cfg *config, rep *report) error {
	nodes, err := openNodes(ctx, cfg)
	if err != nil {
		return err
	}
	infos := make([]nodeInfo, len(nodes))
	for i, n := range nodes {
		infos[i] = n.info()
	}
	if len(nodes) == 1 {
		logf("node ready: %s, http %s", nodes[0].pidString(), nodes[0].httpAddr)
		rep.Node = &infos[0]
	} else {
		rep.Nodes = infos
	}
	if nodes[0].pid == 0 {
		rep.Notes = append(rep.Notes, "no --pid: the node's memory, open files and CPU were not measured")
	}
	if len(nodes) == 1 {
		rep.Notes = append(rep.Notes,
			"node goroutines and heap are not measured; profile with --node-arg=--pprof=127.0.0.1:6060")
	} else {
		rep.Notes = append(rep.Notes, "node goroutines and heap are not measured; "+
			"--node-arg goes to every node, so it cannot give each its own --pprof address")
	}
	defer func() {
		for i, s := range stopNodes(nodes, cfg.StopTimeout) {
			infos[i].StopSeconds, infos[i].ExitStatus = s.took.Seconds(), s.status
		}
	}()
	b, err := newBench(cfg, nodes)
	if err != nil {
		return err
	}
	// Deferred after the nodes' stop, so it runs first: clients close
	// before the nodes are told to stop.
	defer b.closeAll(5 * time.Second)
	defer rep.collect(b)
	return b.measure(ctx, rep)
}

// measure runs the connection, memory and message steps.
func (b *bench) measure(ctx context.Context, rep *report) error {
	b.noteStream(rep, "before connecting")
	before, err := b.readMem()
	if err != nil {
		return err
	}
	logf("opening %d connections, %d at a time, from %d source addresses%s",
		b.cfg.N, b.cfg.Concurrency, b.cfg.SrcIPs, b.placement())
	cr, err := b.connectAll(ctx)
	rep.Connect = &cr
	logf("%d connected (%.0f/s), %d failed", cr.Connected, cr.PerSecond, cr.Failed)
	if err != nil {
		return err
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	go b.keepalive(kctx)

	if err := b.idleMemory(ctx, rep, before, cr.Connected); err != nil {
		return err
	}
	b.makePairs()
	if len(b.pairs) == 0 {
		return errors.New("no sender/recipient pair has both connections open")
	}
	return b.messagePhases(ctx, rep)
}

func (b *bench) messagePhases(ctx context.Context, rep *report) error {
	logf("phase A: closed loop, %d senders, window %d, %s", len(b.pairs), b.cfg.Window, b.cfg.Duration)
	rep.PhaseA = b.phaseA(ctx)
	if err := b.between(ctx); err != nil {
		return err
	}
	rate := b.cfg.Rate
	if rate == 0 {
		rate = rep.PhaseA.StoredPerS / 2
	}
	if rate <= 0 {
		return errors.New("phase A stored nothing, so there is no rate for phase B (give --rate)")
	}
	logf("phase B: open loop at %.0f msg/s, %s", rate, b.cfg.Duration)
	rep.PhaseB = b.phaseB(ctx, rate)
	if err := b.between(ctx); err != nil {
		return err
	}
	b.noteStream(rep, "after phase B")
	return nil
}

// between checks that the run may go on.
func (b *bench) between(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, n := range b.nodes {
		if err := n.alive(); err != nil {
			return err
		}
	}
	return nil
}

// readMem reads every node's memory, as bench.nodes, or nothing when the
// pid is unknown.
func (b *bench) readMem() ([]procMem, error) {
	if b.nodes[0].pid == 0 {
		return nil, nil
	}
	ms := make([]procMem, len(b.nodes))
	for i, n := range b.nodes {
		m, err := readProcMem(n.pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.label(), err)
		}
		ms[i] = m
	}
	return ms, nil
}

// idleMemory waits --settle and compares the nodes' memory with before.
func (b *bench) idleMemory(ctx context.Context, rep *report, before []procMem, conns int) error {
	logf("settling %s", b.cfg.Settle)
	sleepCtx(ctx, b.cfg.Settle)
	if err := b.between(ctx); err != nil {
		return err
	}
	after, err := b.readMem()
	if err != nil || after == nil {
		return err
	}
	if len(b.nodes) > 1 {
		rep.ClusterMem = b.clusterMemory(before, after)
		return nil
	}
	m := &memResult{Before: before[0], After: after[0], SettleSeconds: b.cfg.Settle.Seconds(),
		Connections: conns, DeltaBytes: after[0].RSS - before[0].RSS}
	m.BytesPerConn = float64(m.DeltaBytes) / float64(conns)
	m.AnonPerConn = float64(after[0].RSSAnon-before[0].RSSAnon) / float64(conns)
	m.NodeFDs, _ = countFDs(b.nodes[0].pid)
	rep.Memory = m
	return nil
}
