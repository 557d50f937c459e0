package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// node is the onechat node under test: a child process this tool started,
// or a running node it attached to.
type node struct {
	name     string // --name in a cluster, else ""
	httpAddr string // host:port of HTTP and /ws
	natsAddr string // host:port of the NATS client port of a started node
	pid      int    // 0 when unknown (attach without --pid)
	secret   string
	version  string
	args     []string // the child's command line, for the report

	cmd     *exec.Cmd
	dataDir string
	exited  chan struct{} // closed when the child has exited
	waitErr error         // the child's exit status, once exited is closed
}

// nodeInfo is the node's part of the report.
type nodeInfo struct {
	Name        string   `json:"name,omitempty"` // in a cluster
	Mode        string   `json:"mode"`           // "child" or "attach"
	PID         int      `json:"pid,omitempty"`
	HTTP        string   `json:"http"`
	Version     string   `json:"version,omitempty"`
	Args        []string `json:"args,omitempty"`
	FDLimit     int64    `json:"fd_limit,omitempty"`
	StopSeconds float64  `json:"stop_seconds,omitempty"`
	ExitStatus  string   `json:"exit_status,omitempty"`
}

func (n *node) info() nodeInfo {
	ni := nodeInfo{Name: n.name, Mode: "attach", PID: n.pid, HTTP: n.httpAddr,
		Version: n.version, Args: n.args}
	if n.cmd != nil {
		ni.Mode = "child"
	}
	if n.pid != 0 {
		ni.FDLimit, _ = fdLimit(n.pid)
	}
	return ni
}

// openNode starts or attaches to the node and waits until it is ready.
func openNode(ctx context.Context, cfg *config) (*node, error) {
	if cfg.Attach != "" {
		addr, err := attachAddr(cfg.Attach)
		if err != nil {
			return nil, err
		}
		n := &node{httpAddr: addr, pid: cfg.PID, secret: cfg.JWTSecret}
		return n, n.waitReady(ctx, cfg.StartTimeout)
	}
	n, err := startChild(cfg)
	if err != nil {
		return nil, err
	}
	logf("started node %s, pid %d, waiting for /readyz", cfg.Onechat, n.pid)
	if err := n.waitReady(ctx, cfg.StartTimeout); err != nil {
		n.stop(cfg.StopTimeout)
		return nil, err
	}
	return n, nil
}

// startChild starts the node binary with a fresh data directory, a random
// secret and free loopback ports.
func startChild(cfg *config) (*node, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	return spawn(cfg, childSpec{secret: secret, http: ports[0], tcp: ports[1], nats: ports[2]})
}

// childSpec is one node for spawn to start.
type childSpec struct {
	name            string // "" for a lone node
	secret          string
	http, tcp, nats string   // listen addresses
	extra           []string // cluster flags, put before the --node-arg ones
}

// spawn starts the node binary as spec says, with a fresh data directory.
func spawn(cfg *config, spec childSpec) (*node, error) {
	path, err := exec.LookPath(cfg.Onechat)
	if err != nil {
		return nil, fmt.Errorf("node binary %q: %w (build it with: go build -o onechat ./cmd/onechat)",
			cfg.Onechat, err)
	}
	dir, err := os.MkdirTemp("", "onechat-bench-*")
	if err != nil {
		return nil, fmt.Errorf("node data directory: %w", err)
	}
	n := &node{name: spec.name, httpAddr: spec.http, natsAddr: spec.nats, secret: spec.secret,
		dataDir: dir, exited: make(chan struct{})}
	n.args = append([]string{path, "--data", dir, "--jwt-secret", "SECRET",
		"--http", spec.http, "--tcp", spec.tcp, "--nats", spec.nats,
		"--send-rate", "-1", "--log-level", "warn"}, spec.extra...)
	n.args = append(n.args, cfg.NodeArgs...)
	n.version = nodeVersion(path)
	if err := n.start(path, spec.secret); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return n, nil
}

func (n *node) start(path, secret string) error {
	args := append([]string(nil), n.args[1:]...)
	args[3] = secret // the report shows SECRET in its place
	n.cmd = exec.Command(path, args...)
	// The node logs to stderr; stdout stays free for --json. In a
	// cluster each line says which node wrote it.
	n.cmd.Stdout, n.cmd.Stderr = os.Stderr, os.Stderr
	if n.name != "" {
		w := &prefixWriter{w: os.Stderr, prefix: []byte("[" + n.name + "] ")}
		n.cmd.Stdout, n.cmd.Stderr = w, w
	}
	n.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a terminal's Ctrl-C reaches only this
		// tool, which then closes its connections and stops the node in
		// order.
		Setpgid: true,
		// If this tool dies without stopping it, the node goes too.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start node %s: %w", path, err)
	}
	n.pid = n.cmd.Process.Pid
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.exited)
	}()
	return nil
}

// freePorts returns k distinct free host:port addresses on 127.0.0.1. All
// k listeners stay open until every port is known, so they differ.
func freePorts(k int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

func randomHex(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// nodeVersion asks the binary for its version; "" if it will not say.
func nodeVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// waitReady polls GET /readyz until it answers 200. Polling is the only
// way to learn readiness over HTTP; a dying child ends the wait at once.
func (n *node) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		if last = n.readyOnce(ctx, client); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("%s: wait for /readyz: %w", n.label(), ctx.Err())
			}
			return fmt.Errorf("%s at %s not ready after %s: %v", n.label(), n.httpAddr, timeout, last)
		case <-n.exitedChan():
			return fmt.Errorf("%s exited before it was ready: %v", n.label(), n.waitErr)
		case <-tick.C:
		}
	}
}

func (n *node) readyOnce(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// exitedChan is nil (never ready) for an attached node.
func (n *node) exitedChan() <-chan struct{} {
	if n.cmd == nil {
		return nil
	}
	return n.exited
}

// alive reports whether a started node is still running.
func (n *node) alive() error {
	select {
	case <-n.exitedChan():
		return fmt.Errorf("the %s exited during the run: %v", n.label(), n.waitErr)
	default:
		return nil
	}
}

// stop ends a started node: SIGTERM, then SIGKILL after timeout. It
// returns how long the node took and how it exited. An attached node is
// left running.
func (n *node) stop(timeout time.Duration) (time.Duration, string) {
	if n.cmd == nil {
		return 0, ""
	}
	defer os.RemoveAll(n.dataDir)
	logf("stopping %s (SIGTERM)", n.label())
	start := time.Now()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	status := ""
	select {
	case <-n.exited:
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.exited
		status = "killed after " + timeout.String() + " without exiting on SIGTERM; "
	}
	took := time.Since(start)
	if n.waitErr != nil {
		return took, status + n.waitErr.Error()
	}
	return took, status + "exit status 0"
}

// label names the node in messages: "node", or "node n1" in a cluster.
func (n *node) label() string {
	if n.name == "" {
		return "node"
	}
	return "node " + n.name
}

// pidString is for messages.
func (n *node) pidString() string {
	if n.pid == 0 {
		return "unknown pid"
	}
	return "pid " + strconv.Itoa(n.pid)
}
