package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// config is every knob of a run. It is printed in the report as given, so a
// reader can reproduce the run.
type config struct {
	Onechat      string
	Attach       string
	PID          int
	JWTSecret    string
	NodeArgs     []string
	N            int
	Concurrency  int
	SrcIPs       int
	Settle       time.Duration
	Window       int
	Duration     time.Duration
	Rate         float64
	Drain        time.Duration
	ConnTimeout  time.Duration
	StartTimeout time.Duration
	StopTimeout  time.Duration
	Keepalive    string
	JSON         bool
	Cluster      int    // nodes to start as one cluster; 0: one node, no cluster
	Place        string // cluster: where connections go, "cross" or "n0"
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

const usageHead = `onechat-bench measures one onechat node, or a cluster: connection rate,
idle memory per WebSocket connection, direct-message capacity (closed
loop) and latency (open loop at half that capacity).

usage:
  go build -o onechat ./cmd/onechat && go run ./cmd/onechat-bench [flags]
  onechat-bench --cluster 3 [--place cross|n0] [flags]
  onechat-bench --attach http://127.0.0.1:8080 --pid PID --jwt-secret S [flags]

By default the node is started as a child process with a fresh data
directory and free ports on 127.0.0.1. Traffic only ever goes to loopback.
With --cluster 3, three nodes n0 n1 n2 are started as one cluster (inbox
stream replicated R3); by default every message then crosses nodes.

flags:
`

func newFlagSet(cfg *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("onechat-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Onechat, "onechat", "./onechat",
		"node binary to start (build: go build -o onechat ./cmd/onechat)")
	fs.StringVar(&cfg.Attach, "attach", "",
		"measure a running node at this loopback `URL` (http://127.0.0.1:PORT) instead of starting one")
	fs.IntVar(&cfg.PID, "pid", 0,
		"with --attach: the node's process id, for memory and CPU figures (0: skip them)")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "",
		"with --attach: the node's HS256 secret (a started node gets a random one)")
	fs.Var((*stringList)(&cfg.NodeArgs), "node-arg",
		"extra `flag` for the started node, repeatable (e.g. --node-arg=--fsync=always)")
	fs.IntVar(&cfg.N, "n", 10000, "WebSocket connections (one user each); connection i sends to i+n/2")
	fs.IntVar(&cfg.Concurrency, "c", 100, "connections being opened at once")
	fs.IntVar(&cfg.SrcIPs, "src-ips", 8,
		"source addresses 127.0.0.2 … 127.0.0.(1+k) the connections are spread over")
	fs.DurationVar(&cfg.Settle, "settle", 10*time.Second,
		"wait after connecting before reading the node's memory")
	fs.IntVar(&cfg.Window, "window", 4, "phase A: unacknowledged sends each sender keeps outstanding")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "length of each message phase (A and B)")
	fs.Float64Var(&cfg.Rate, "rate", 0,
		"phase B: total messages/s (0: half the stored/s measured in phase A)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second,
		"after each phase, longest wait for outstanding acks and deliveries")
	fs.DurationVar(&cfg.ConnTimeout, "conn-timeout", 10*time.Second,
		"longest a connection may take to open and get its ok frame")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 60*time.Second,
		"longest wait for the node's /readyz to answer 200")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 45*time.Second,
		"after SIGTERM, wait this long for the started node before SIGKILL")
	fs.StringVar(&cfg.Keepalive, "keepalive", "op",
		"keepalive each connection sends every ping interval: op ({\"op\":\"ping\"} frames, "+
			"as the protocol asks) or ws (WebSocket ping control frames)")
	fs.IntVar(&cfg.Cluster, "cluster", 0,
		"start this many nodes (3 to 5) as one cluster on loopback; 0: one node, not clustered")
	fs.StringVar(&cfg.Place, "place", "cross",
		"with --cluster: cross (connection i on node i%k for senders, each recipient on the sender's "+
			"node + 1, so every message crosses nodes) or n0 (every connection on n0, to measure "+
			"the memory the other nodes spend per remote user)")
	fs.BoolVar(&cfg.JSON, "json", false,
		"print a JSON object on stdout (the text report then goes to stderr)")
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	return fs
}

// parseConfig parses args and checks them. It returns flag.ErrHelp for
// --help, after printing the usage.
func parseConfig(args []string, out io.Writer) (*config, error) {
	cfg := &config{}
	fs := newFlagSet(cfg, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *config) validate() error {
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(c.N >= 2, "-n %d: need at least 2 connections (one sender, one recipient)", c.N)
	check(c.Concurrency >= 1, "-c %d: must be at least 1", c.Concurrency)
	check(c.SrcIPs >= 1 && c.SrcIPs <= 253, "--src-ips %d: want 1 to 253", c.SrcIPs)
	check(c.Settle >= 0, "--settle must not be negative")
	check(c.Window >= 1, "--window %d: must be at least 1", c.Window)
	check(c.Duration > 0, "--duration must be positive")
	check(c.Rate >= 0, "--rate must not be negative")
	check(c.Drain > 0 && c.ConnTimeout > 0, "--drain and --conn-timeout must be positive")
	check(c.StartTimeout > 0 && c.StopTimeout > 0, "--start-timeout and --stop-timeout must be positive")
	check(c.Keepalive == "op" || c.Keepalive == "ws", "--keepalive %q: want op or ws", c.Keepalive)
	check(c.Cluster == 0 || (c.Cluster >= 3 && c.Cluster <= 5),
		"--cluster %d: want 0 (one node) or 3 to 5 nodes (the inbox stream is replicated R3)", c.Cluster)
	check(c.Place == "cross" || c.Place == "n0", "--place %q: want cross or n0", c.Place)
	check(c.Cluster > 0 || c.Place == "cross", "--place only goes with --cluster")
	check(c.Cluster == 0 || c.Attach == "", "--cluster starts its nodes; it does not go with --attach")
	if c.Attach != "" {
		check(c.JWTSecret != "", "--attach needs --jwt-secret (the node's secret)")
		if _, err := attachAddr(c.Attach); err != nil {
			errs = append(errs, err)
		}
	} else {
		check(c.PID == 0, "--pid only goes with --attach")
		check(c.JWTSecret == "", "--jwt-secret only goes with --attach (a started node gets a random secret)")
	}
	return errors.Join(errs...)
}

// attachAddr returns host:port of an --attach URL. Only loopback
// addresses are accepted: this tool must never load another host.
func attachAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("--attach %q: want http://127.0.0.1:PORT", raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("--attach %q: only IPv4 loopback addresses (127.x.x.x) may be measured", raw)
	}
	return net.JoinHostPort(host, port), nil
}

// params is the configuration as it appears in the JSON report.
func (c *config) params() map[string]any {
	p := map[string]any{
		"n": c.N, "c": c.Concurrency, "src_ips": c.SrcIPs,
		"settle": c.Settle.String(), "window": c.Window, "duration": c.Duration.String(),
		"rate": c.Rate, "drain": c.Drain.String(), "conn_timeout": c.ConnTimeout.String(),
		"keepalive": c.Keepalive,
	}
	if c.Cluster > 0 {
		p["cluster"], p["place"] = c.Cluster, c.Place
	}
	if c.Attach != "" {
		p["attach"], p["pid"] = c.Attach, c.PID
	} else {
		p["onechat"], p["node_args"] = c.Onechat, append([]string{}, c.NodeArgs...)
	}
	return p
}
