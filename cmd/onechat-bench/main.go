// Command onechat-bench measures one onechat node over WebSocket:
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
	n, err := openNode(ctx, cfg)
	if err != nil {
		return err
	}
	logf("node ready: %s, http %s", n.pidString(), n.httpAddr)
	ni := n.info()
	rep.Node = &ni
	if n.pid == 0 {
		rep.Notes = append(rep.Notes, "no --pid: the node's memory, open files and CPU were not measured")
	}
	rep.Notes = append(rep.Notes,
		"node goroutines and heap are not measured; profile with --node-arg=--pprof=127.0.0.1:6060")
	defer func() {
		took, status := n.stop(cfg.StopTimeout)
		ni.StopSeconds, ni.ExitStatus = took.Seconds(), status
	}()
	b, err := newBench(cfg, n)
	if err != nil {
		return err
	}
	// Deferred after the node's stop, so it runs first: clients close
	// before the node is told to stop.
	defer b.closeAll(5 * time.Second)
	defer rep.collect(b)
	return b.measure(ctx, rep)
}

// measure runs the connection, memory and message steps.
func (b *bench) measure(ctx context.Context, rep *report) error {
	before, err := b.readMem()
	if err != nil {
		return err
	}
	logf("opening %d connections, %d at a time, from %d source addresses",
		b.cfg.N, b.cfg.Concurrency, b.cfg.SrcIPs)
	cr, err := b.connectAll(ctx)
	rep.Connect = &cr
	logf("%d connected (%.0f/s), %d failed", cr.Connected, cr.PerSecond, cr.Failed)
	if err != nil {
		return err
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	go b.keepalive(kctx)

	if rep.Memory, err = b.idleMemory(ctx, before, cr.Connected); err != nil {
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
	return b.between(ctx)
}

// between checks that the run may go on.
func (b *bench) between(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.node.alive()
}

// readMem reads the node's memory, or nothing when its pid is unknown.
func (b *bench) readMem() (*procMem, error) {
	if b.node.pid == 0 {
		return nil, nil
	}
	m, err := readProcMem(b.node.pid)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// idleMemory waits --settle and compares the node's memory with before.
func (b *bench) idleMemory(ctx context.Context, before *procMem, conns int) (*memResult, error) {
	logf("settling %s", b.cfg.Settle)
	sleepCtx(ctx, b.cfg.Settle)
	if err := b.between(ctx); err != nil {
		return nil, err
	}
	after, err := b.readMem()
	if err != nil || after == nil {
		return nil, err
	}
	m := &memResult{Before: *before, After: *after, SettleSeconds: b.cfg.Settle.Seconds(),
		Connections: conns, DeltaBytes: after.RSS - before.RSS}
	m.BytesPerConn = float64(m.DeltaBytes) / float64(conns)
	m.AnonPerConn = float64(after.RSSAnon-before.RSSAnon) / float64(conns)
	m.NodeFDs, _ = countFDs(b.node.pid)
	return m, nil
}
