package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/onechat/onechat/session"
)

// Config is everything a node needs. The zero value is completed by
// ApplyDefaults into a single node serving on the default ports with its
// data in ./onechat-data.
type Config struct {
	DataDir   string // default "onechat-data"
	HTTPAddr  string // HTTP API and WebSocket (/ws); default ":8080"
	TCPAddr   string // TCP protocol; default ":7070"
	NATSAddr  string // NATS client port for services; default "127.0.0.1:4222"; "off" for none
	JWTSecret string // HS256 secret; empty: generated and kept in DataDir

	Retention   time.Duration // how long messages are kept; default 30 days
	DedupWindow time.Duration // how long a send ref deduplicates; default 2 minutes
	// Fsync is the JetStream fsync policy: "" keeps JetStream's default
	// (every 2 minutes), "always" syncs each write, or a duration.
	Fsync string

	Session        session.Config
	WSReadBuffer   int // gws read buffer per WebSocket connection; default 512
	LiveShards     int // NATS connections carrying live subscriptions; default 4
	LiveBuffer     int // channel capacity per live shard; default 16384
	ServiceWorkers int // goroutines handling oc.api.send; default 8

	// PprofAddr, when set, serves net/http/pprof on its own listener.
	// Profiles reveal internals: bind it to loopback.
	PprofAddr string

	Log *slog.Logger // default slog.Default()
}

// DefaultDataDir is where a node keeps its data unless told otherwise.
const DefaultDataDir = "onechat-data"

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	set := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	set(&c.DataDir, DefaultDataDir)
	set(&c.HTTPAddr, ":8080")
	set(&c.TCPAddr, ":7070")
	set(&c.NATSAddr, "127.0.0.1:4222")
	if c.WSReadBuffer <= 0 {
		c.WSReadBuffer = 512
	}
	if c.LiveShards <= 0 {
		c.LiveShards = 4
	}
	if c.LiveBuffer <= 0 {
		c.LiveBuffer = 16384
	}
	if c.ServiceWorkers <= 0 {
		c.ServiceWorkers = 8
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.Session.ApplyDefaults()
}

// Validate reports every problem with c, in words a user can act on.
func (c *Config) Validate() error {
	var errs []error
	for _, a := range []struct{ name, addr string }{{"http", c.HTTPAddr}, {"tcp", c.TCPAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port (e.g. :8080)", a.name, a.addr))
		}
	}
	if c.NATSAddr != "off" {
		if _, _, err := splitNATSAddr(c.NATSAddr); err != nil {
			errs = append(errs, fmt.Errorf("--nats %q: %v", c.NATSAddr, err))
		}
	}
	if _, _, err := parseFsync(c.Fsync); err != nil {
		errs = append(errs, err)
	}
	if c.Retention < 0 || c.DedupWindow < 0 {
		errs = append(errs, errors.New("retention and dedup window must not be negative"))
	}
	if err := c.Session.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// splitNATSAddr turns host:port into nats-server options; port 0 picks a
// free port (nats-server spells that -1).
func splitNATSAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port (e.g. 127.0.0.1:4222)")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = -1
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func parseFsync(s string) (always bool, every time.Duration, err error) {
	switch strings.ToLower(s) {
	case "":
		return false, 0, nil
	case "always":
		return true, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("--fsync %q: want \"always\" or a positive duration such as 1s", s)
	}
	return false, d, nil
}
