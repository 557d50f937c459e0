package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
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

	// Name is the node's name in the cluster: unique and the same across
	// restarts (a StatefulSet's pod name). Default: the host name.
	Name string
	// Cluster, when set, is the route listen address (e.g. ":6222"); the
	// node then forms a NATS cluster with Routes and replicates JetStream.
	Cluster string
	// Routes are seed route URLs (nats://host:6222). A node may list itself.
	Routes []string
	// ClusterName names the NATS cluster; default "onechat".
	ClusterName string
	// ClusterAdvertise is the route address peers should dial, when the
	// listen address is not reachable as it is (NAT, containers).
	ClusterAdvertise string
	// ClusterUser and ClusterPassword, when set, are required of routes
	// and sent on the routes this node dials.
	ClusterUser, ClusterPassword string
	// ClusterTLS secures routes; both sides verify each other's
	// certificate against the CA.
	ClusterTLS TLSFiles
	// NATSTLS secures the NATS client port for services.
	NATSTLS TLSFiles
	// AllowShrink lets this node lower the shared message stream's
	// retention, largest message or replicas; see storage.ErrShrink.
	AllowShrink bool
	// Replicas is the inbox stream's replication: 0 picks 1 for a single
	// node and 3 for a cluster.
	Replicas int
	// Advertise is the host clients use to reach this node, sent to
	// clients in the node list. Default: the listen host, or the host
	// name when listening on every interface.
	Advertise string

	Session        session.Config
	WSReadBuffer   int // gws read buffer per WebSocket connection; default 512
	LiveShards     int // NATS connections carrying live subscriptions; default 4
	LiveBuffer     int // channel capacity per live shard; default 16384
	ServiceWorkers int // goroutines handling oc.api.send; default 8

	// Metrics is where Prometheus metrics are served: "http" (the
	// default) at /metrics on HTTPAddr, "off", or a host:port of their own.
	Metrics string

	// AdminAddr, when set, serves POST /drain, which drains and stops the
	// node like SIGTERM and answers when done. A Kubernetes preStop hook
	// calls it through "onechat drain". It has no authentication: bind it
	// to loopback.
	AdminAddr string
	// DrainTimeout bounds how long connections get to finish when the node
	// drains; default 20s. See Shutdown.
	DrainTimeout time.Duration

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
	set(&c.ClusterName, "onechat")
	set(&c.Metrics, "http")
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.Replicas == 0 {
		c.Replicas = 1
		if c.Cluster != "" {
			c.Replicas = 3
		}
	}
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
	errs = append(errs, c.validateCluster()...)
	if c.Metrics != "http" && c.Metrics != "off" {
		if _, _, err := net.SplitHostPort(c.Metrics); err != nil {
			errs = append(errs, fmt.Errorf("--metrics %q: want http, off or host:port", c.Metrics))
		}
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

// TLSFiles names PEM files for a TLS listener. Cert and Key go together;
// CA, when set, is also required of and used to verify the other side.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is set.
func (t TLSFiles) Enabled() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

func (t TLSFiles) validate(flag string) error {
	if t.Enabled() && (t.Cert == "" || t.Key == "") {
		return fmt.Errorf("--%s-tls-cert and --%s-tls-key are both needed for TLS "+
			"(--%s-tls-ca alone is not enough)",
			flag, flag, flag)
	}
	return nil
}

func (c *Config) validateCluster() []error {
	var errs []error
	if c.Name == "" || strings.ContainsAny(c.Name, " \t\r\n") {
		errs = append(errs, fmt.Errorf("--name %q: want a name without spaces", c.Name))
	}
	if err := c.NATSTLS.validate("nats"); err != nil {
		errs = append(errs, err)
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("--replicas %d: want 0 (automatic) to 5", c.Replicas))
	}
	if c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: JetStream allows at most 5", c.Replicas))
	}
	if c.Cluster == "" {
		if len(c.Routes) > 0 || c.ClusterTLS.Enabled() || c.ClusterUser != "" {
			errs = append(errs, errors.New("--routes and other route options need --cluster"))
		}
		if c.Replicas > 1 {
			errs = append(errs, errors.New("--replicas above 1 needs --cluster"))
		}
		return errs
	}
	if _, _, err := splitNATSAddr(c.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("--cluster %q: %v", c.Cluster, err))
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("--cluster needs --routes: the route URLs of the cluster's nodes "+
			"(a node may list itself)"))
	}
	for _, r := range c.Routes {
		if _, err := routeURL(r, "", ""); err != nil {
			errs = append(errs, err)
		}
	}
	if (c.ClusterUser == "") != (c.ClusterPassword == "") {
		errs = append(errs, errors.New("--cluster-user and --cluster-password go together"))
	}
	if err := c.ClusterTLS.validate("cluster"); err != nil {
		errs = append(errs, err)
	}
	if c.JWTSecret == "" {
		// Each node would generate its own, and a client's token would
		// work on one node only.
		errs = append(errs, errors.New("a cluster needs --jwt-secret, the same on every node"))
	}
	return errs
}

// routeURL parses a --routes entry and adds the route credentials when
// the entry carries none.
func routeURL(s, user, password string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route") || u.Port() == "" {
		return nil, fmt.Errorf("--routes entry %q: want nats://host:port", s)
	}
	if u.User == nil && user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u, nil
}
