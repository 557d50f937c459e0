package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

// connectResult is the connection phase's part of the report.
type connectResult struct {
	Requested   int              `json:"requested"`
	Connected   int              `json:"connected"`
	Failed      int              `json:"failed"`
	NotTried    int              `json:"not_attempted,omitempty"`
	Seconds     float64          `json:"seconds"`
	PerSecond   float64          `json:"per_second"`
	OpenTime    *latency         `json:"open_ms,omitempty"` // dial to ok frame, per connection
	Failures    map[string]int64 `json:"failures,omitempty"`
	NodeFDs     int              `json:"node_open_files,omitempty"`
	NodeFDLimit int64            `json:"node_fd_limit,omitempty"`
	// In a cluster: connections open on each node, and which node the
	// open-file figures are of (the one with the most open).
	PerNode []int  `json:"connected_per_node,omitempty"`
	FDNode  string `json:"fd_node,omitempty"`
}

// stepErr says which step of opening a connection failed.
type stepErr struct {
	step string
	err  error
}

func (e *stepErr) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepErr) Unwrap() error { return e.err }

// connectAll opens every connection, c at a time. It stops early, with an
// error, if this process runs out of file descriptors.
func (b *bench) connectAll(ctx context.Context) (connectResult, error) {
	res := connectResult{Requested: len(b.clients)}
	toks, err := b.signTokens()
	if err != nil {
		return res, err
	}
	if err := b.checkFDBudget(); err != nil {
		return res, err
	}
	run := &connectRun{toks: toks, took: make([]int64, len(b.clients)),
		fails: map[string]int64{}, opt: clientOption(b.cfg.ConnTimeout)}
	ctx, run.cancel = context.WithCancel(ctx)
	defer run.cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range min(b.cfg.Concurrency, len(b.clients)) {
		wg.Go(func() { b.connectWorker(ctx, run) })
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if len(b.nodes) > 1 {
		res.PerNode = make([]int, len(b.nodes))
	}
	for _, c := range b.clients {
		if c.up.Load() {
			res.Connected++
			if res.PerNode != nil {
				res.PerNode[c.home]++
			}
		}
	}
	tried := int(run.next.Load())
	tried = min(tried, len(b.clients))
	res.Failed, res.NotTried = tried-res.Connected, len(b.clients)-tried
	res.PerSecond = float64(res.Connected) / res.Seconds
	res.Failures = run.fails
	res.OpenTime = summarize(slices.DeleteFunc(run.took, func(ns int64) bool { return ns == 0 }))
	return res, b.connectVerdict(&res, run.emfile.Load())
}

// connectRun is the state the connection workers share.
type connectRun struct {
	toks   []string
	took   []int64 // time to open each connection; each index has one writer
	opt    gws.ClientOption
	next   atomic.Int64 // next connection index to open
	emfile atomic.Bool
	cancel context.CancelFunc

	mu    sync.Mutex
	fails map[string]int64
}

// connectWorker opens connections until none are left or ctx ends.
func (b *bench) connectWorker(ctx context.Context, run *connectRun) {
	for ctx.Err() == nil {
		i := int(run.next.Add(1) - 1)
		if i >= len(b.clients) {
			return
		}
		t0 := time.Now()
		err := b.connectOne(ctx, i, run.toks[i], run.opt)
		if err == nil {
			run.took[i] = int64(time.Since(t0))
			continue
		}
		run.mu.Lock()
		run.fails[failureKind(err)]++
		run.mu.Unlock()
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			run.emfile.Store(true)
			run.cancel() // every further dial would fail the same way
		}
	}
}

// connectOne opens connection i: dial from its source address, upgrade
// with the token in the URL, wait for the ok frame.
func (b *bench) connectOne(ctx context.Context, i int, tok string, opt gws.ClientOption) error {
	c := b.clients[i]
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ConnTimeout)
	defer cancel()
	addr := b.nodes[c.home].httpAddr
	nc, err := b.dialers[i%len(b.dialers)].DialContext(ctx, "tcp", addr)
	if err != nil {
		return &stepErr{"dial", err}
	}
	opt.Addr = "ws://" + addr + "/ws?token=" + tok
	ws, resp, err := gws.NewClientFromConn(c, &opt, nc)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return &stepErr{"upgrade", err}
	}
	c.ws = ws
	go ws.ReadLoop()
	select {
	case err = <-c.ready:
	case <-ctx.Done():
		err = &stepErr{"ok frame", ctx.Err()}
	}
	if err != nil {
		c.up.Store(false)
		_ = nc.Close()
	}
	return err
}

// failureKind is a short, stable key for counting failures alike.
func failureKind(err error) string {
	step := "connect"
	var se *stepErr
	if errors.As(err, &se) {
		step = se.step
	}
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return step + ": too many open files (EMFILE) in this process"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return step + ": timeout"
	case errors.Is(err, context.Canceled):
		return step + ": interrupted"
	case errors.As(err, &errno):
		return step + ": " + errno.Error()
	case se != nil:
		return step + ": " + truncate(se.err.Error(), 60)
	}
	return truncate(err.Error(), 80)
}

// checkFDBudget refuses a run that cannot fit in this process's open-file
// limit, rather than failing part way.
func (b *bench) checkFDBudget() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("read open-file limit: %w", err)
	}
	open, err := countFDs(os.Getpid())
	if err != nil {
		return err
	}
	const spare = 32 // HTTP client, /proc reads, the child's pipes
	if need := len(b.clients) + open + spare; uint64(need) > rl.Cur {
		return fmt.Errorf("-n %d needs about %d open files, but this process may hold at most %d "+
			"(RLIMIT_NOFILE soft %d, hard %d; %d already open): lower -n",
			len(b.clients), need, rl.Cur, rl.Cur, rl.Max, open)
	}
	return nil
}

// connectVerdict turns an out-of-files condition, here or in the node,
// into a clear error.
func (b *bench) connectVerdict(res *connectResult, emfile bool) error {
	busiest := b.nodes[0]
	for _, n := range b.nodes {
		if n.pid == 0 {
			continue
		}
		fds, _ := countFDs(n.pid)
		if fds > res.NodeFDs || res.NodeFDLimit == 0 {
			res.NodeFDs, busiest = fds, n
			res.NodeFDLimit, _ = fdLimit(n.pid)
		}
	}
	if len(b.nodes) > 1 {
		res.FDNode = busiest.name
	}
	if emfile {
		var rl syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		return fmt.Errorf("this process hit its open-file limit (EMFILE) after %d connections: "+
			"it may hold at most %d open files (RLIMIT_NOFILE hard limit %d); lower -n",
			res.Connected, rl.Cur, rl.Max)
	}
	if res.Failed > 0 && res.NodeFDLimit > 0 && int64(res.NodeFDs)+16 >= res.NodeFDLimit {
		return fmt.Errorf("the %s (%s) is at its open-file limit (%d open of %d): "+
			"it has probably hit EMFILE and stopped accepting; lower -n",
			busiest.label(), busiest.pidString(), res.NodeFDs, res.NodeFDLimit)
	}
	if res.Connected < 2 {
		return fmt.Errorf("only %d of %d connections opened; nothing to measure",
			res.Connected, res.Requested)
	}
	return nil
}

// keepalive pings every connection once per interval, a slice at a time
// so the pings are spread evenly. The node closes connections it has not
// heard from for its idle timeout, and recipients never send. It runs
// until ctx ends.
func (b *bench) keepalive(ctx context.Context) {
	interval := time.Duration(b.pingMs.Load()) * time.Millisecond
	if interval <= 0 {
		interval = 25 * time.Second
	}
	const tick = 100 * time.Millisecond
	per := int(int64(len(b.clients))*int64(tick)/int64(interval)) + 1
	t := time.NewTicker(tick)
	defer t.Stop()
	next, ws := 0, b.cfg.Keepalive == "ws"
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range per {
			b.clients[next].ping(ws)
			next = (next + 1) % len(b.clients)
		}
	}
}
