package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/metrics"
	"github.com/onechat/onechat/presence"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
	"github.com/onechat/onechat/storage"
	"github.com/onechat/onechat/transport/httpapi"
	"github.com/onechat/onechat/transport/tcp"
	"github.com/onechat/onechat/transport/ws"
)

// Node is one running onechat node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	nodeID  string
	secret  []byte
	natsLog *natsLogger

	meta  *storage.Meta
	ns    *server.Server
	pub   *nats.Conn   // JetStream API and publishes
	shard []*nats.Conn // live subscriptions
	inbox *storage.Inbox
	hub   *session.Hub
	live  *bus.Live
	svc   *service
	peers *cluster
	dir   *presence.Directory
	m     *metrics.Chat

	httpLn    net.Listener
	tcpLn     net.Listener
	pprofLn   net.Listener
	adminLn   net.Listener
	metricsLn net.Listener
	httpSrv   *http.Server
	handler   atomic.Pointer[http.Handler] // the API once started
	tcpSrv    *tcp.Server

	bgCtx    context.Context
	cancel   context.CancelFunc
	bg       sync.WaitGroup
	ready    atomic.Bool
	lameDuck bool // leave the NATS cluster in lame duck mode
	stopOnce sync.Once
	stopped  chan struct{} // closed when Shutdown has finished
	stopErr  error
}

// Start starts a node and returns once it serves every listener. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node: invalid configuration:\n%w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Log, stopped: make(chan struct{})}
	// Everything that can fail on this node alone (files, the secret,
	// ports) is checked before it joins a cluster: a node that joins and
	// then fails stays in JetStream's membership as a dead peer.
	for _, step := range []func() error{
		n.openMeta,
		n.bind,
		n.openNATS,
		func() error { return n.openInbox(ctx) },
		func() error { return n.startCore(ctx) },
		n.serve,
	} {
		if err := step(); err != nil {
			n.teardown()
			return nil, err
		}
	}
	n.ready.Store(true)
	return n, nil
}

func (n *Node) openMeta() error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	meta, err := storage.OpenMeta(filepath.Join(n.cfg.DataDir, "meta.db"))
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.meta = meta
	if n.nodeID, err = meta.NodeID(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	prev, err := meta.ClaimName(n.cfg.Name)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.cfg.Cluster != "" && prev != "" && prev != n.cfg.Name {
		_, _ = meta.ClaimName(prev)
		return fmt.Errorf("node: data directory %s belongs to node %q: start it with --name %s, "+
			"or give node %q a new data directory", n.cfg.DataDir, prev, prev, n.cfg.Name)
	}
	n.log = n.log.With("node", n.cfg.Name)
	n.cfg.Log = n.log
	if n.secret, err = auth.LoadSecret(n.cfg.JWTSecret, n.cfg.DataDir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

func (n *Node) openNATS() error {
	var err error
	if n.ns, n.natsLog, err = startNATS(&n.cfg); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.pub, err = connect(n.ns, "onechat-pub", n.log); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// bind opens every listener. Only HTTP serves at once, with health
// endpoints: a clustered node may wait a while for its peers before its
// store is ready. The others queue connections until serve.
func (n *Node) bind() error {
	for _, l := range []struct {
		ln   *net.Listener
		addr string
		flag string
	}{
		{&n.httpLn, n.cfg.HTTPAddr, "http"},
		{&n.tcpLn, n.cfg.TCPAddr, "tcp"},
		{&n.adminLn, n.cfg.AdminAddr, "admin"},
		{&n.metricsLn, n.metricsAddr(), "metrics"},
		{&n.pprofLn, n.cfg.PprofAddr, "pprof"},
	} {
		if l.addr == "" {
			continue
		}
		var err error
		if *l.ln, err = net.Listen("tcp", l.addr); err != nil {
			return fmt.Errorf("node: listen %s (--%s): %w", l.flag, l.flag, err)
		}
	}
	var starting http.Handler = httpapi.Starting(n.readyErr)
	n.handler.Store(&starting)
	n.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*n.handler.Load()).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.bg.Go(func() {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	return nil
}

// openInbox creates or joins the inbox stream. In a cluster that needs the
// JetStream meta leader and, the first time, enough peers to place the
// replicas, so it retries until the cluster is there or ctx ends.
func (n *Node) openInbox(ctx context.Context) error {
	js, err := jetstream.New(n.pub)
	if err != nil {
		return fmt.Errorf("node: jetstream: %w", err)
	}
	cfg := storage.InboxConfig{
		Retention:   n.cfg.Retention,
		DedupWindow: n.cfg.DedupWindow,
		// Room for the envelope's id, names and escapes around a body
		// that filled a whole frame.
		MaxMsgSize:  int32(n.cfg.Session.MaxFrame + 4096),
		Replicas:    n.cfg.Replicas,
		AllowShrink: n.cfg.AllowShrink,
	}
	wait := 100 * time.Millisecond
	lastLog := time.Now()
	for {
		// Until the meta group has a leader, a create waits for nothing.
		for n.cfg.Cluster != "" && !n.ns.JetStreamIsCurrent() && ctx.Err() == nil && n.natsLog.fatal() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n.inbox, err = storage.OpenInbox(actx, js, cfg)
		cancel()
		if err == nil {
			if len(n.inbox.Changed) > 0 {
				n.log.Warn("changed the message stream's settings for every node",
					"changes", strings.Join(n.inbox.Changed, ", "))
			}
			return n.waitStreamLeader(ctx)
		}
		if n.cfg.Cluster == "" || ctx.Err() != nil || errors.Is(err, storage.ErrShrink) {
			return fmt.Errorf("node: %w", err)
		}
		if err := n.natsLog.fatal(); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		if time.Since(lastLog) > 10*time.Second {
			n.log.Warn("waiting for the cluster to place the inbox stream",
				"replicas", n.cfg.Replicas, "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: waiting for the cluster: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// waitStreamLeader waits until the stream has a leader, so that a node
// that says it is ready can store: a new stream elects one a moment after
// it is created.
func (n *Node) waitStreamLeader(ctx context.Context) error {
	if n.cfg.Cluster == "" {
		return nil
	}
	for {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		leader, err := n.inbox.Leader(lctx)
		cancel()
		if err == nil && leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: waiting for the stream's leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) startCore(ctx context.Context) error {
	verifier := auth.NewVerifier(n.secret)
	if n.cfg.Metrics != "off" {
		n.m = metrics.New()
	}
	n.peers = newCluster(n.cfg.Name, n.pub, n.inbox, n.ns.NumRoutes, n.log)
	if err := n.peers.start(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.hub = session.NewHub(session.HubDeps{
		Config: n.cfg.Session, Log: n.log, NodeID: n.nodeID, NodeName: n.cfg.Name,
		Verifier: verifier, Inbox: n.inbox, Cluster: n.peers, Metrics: n.m,
	})
	n.peers.hub.Store(n.hub)
	n.registerHealth()
	n.dir = presence.NewDirectory(presence.Config{
		Node:  n.cfg.Name,
		Local: n.localDevices,
		Interest: func(subject string) int {
			return n.ns.GlobalAccount().Interest(subject)
		},
		Conn: n.pub,
	})
	for i := range n.cfg.LiveShards {
		nc, err := connect(n.ns, fmt.Sprintf("onechat-live-%d", i), n.log)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.shard = append(n.shard, nc)
	}
	n.live = bus.NewLive(bus.LiveConfig{Conns: n.shard, Buffer: n.cfg.LiveBuffer, Handle: func(m *nats.Msg) {
		if presence.IsProbe(m) {
			n.dir.Answer(m)
			return
		}
		n.hub.DeliverLive(m)
	}})
	n.hub.SetLive(n.live)

	bg, cancel := context.WithCancel(context.Background())
	n.bgCtx, n.cancel = bg, cancel
	n.live.Run(bg)
	n.bg.Go(func() { n.hub.Run(bg) })

	n.svc = newService(n.hub, n.dir, n.log, n.cfg.ServiceWorkers)
	if err := n.svc.start(n.pub); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	httpAPI := httpapi.New(n.hub, verifier, n.log, httpapi.Config{
		MaxFrame: n.cfg.Session.MaxFrame, Ready: n.readyErr,
	})
	mux := http.NewServeMux()
	mux.Handle("/ws", httpapi.Methods(ws.NewHandler(n.hub, n.log, ws.Config{
		MaxFrame: n.cfg.Session.MaxFrame, WriteTimeout: n.cfg.Session.WriteTimeout,
		ReadBufferSize: n.cfg.WSReadBuffer,
	}), http.MethodGet))
	httpAPI.Register(mux)
	if n.m != nil && n.cfg.Metrics == "http" {
		mux.Handle("/metrics", httpapi.Methods(n.m.Handler(), http.MethodGet))
	}
	var h http.Handler = mux
	n.handler.Store(&h)
	n.tcpSrv = tcp.NewServer(n.hub, n.log, tcp.Config{
		MaxFrame: n.cfg.Session.MaxFrame, WriteTimeout: n.cfg.Session.WriteTimeout,
	})
	return nil
}

// serve starts serving the listeners bound by bind, and the cluster's
// heartbeats.
func (n *Node) serve() error {
	n.bg.Go(func() {
		if err := n.tcpSrv.Serve(n.tcpLn); err != nil {
			n.log.Error("tcp server stopped", "err", err)
		}
	})
	if n.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", n.m.Handler())
		n.bg.Go(func() { _ = http.Serve(n.metricsLn, mux) })
	}
	if n.adminLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/drain", httpapi.Methods(http.HandlerFunc(n.serveDrain), http.MethodPost))
		n.bg.Go(func() { _ = http.Serve(n.adminLn, mux) })
	}
	if n.pprofLn != nil {
		n.bg.Go(func() { _ = http.Serve(n.pprofLn, pprofMux()) })
		n.log.Info("serving pprof", "addr", n.pprofLn.Addr().String())
	}
	self := n.clientAddr()
	n.peers.self.Store(&self)
	bg := n.bgCtx
	n.bg.Go(func() { n.peers.run(bg) })
	return nil
}

// metricsAddr is the metrics listener's address, or "" when metrics are
// off or served on the HTTP listener.
func (n *Node) metricsAddr() string {
	if n.cfg.Metrics == "http" || n.cfg.Metrics == "off" {
		return ""
	}
	return n.cfg.Metrics
}

func (n *Node) registerHealth() {
	n.m.RegisterHealth(metrics.Health{
		Ready:          func() bool { return n.readyErr() == nil },
		Routes:         func() int { return n.ns.NumRoutes() },
		Nodes:          func() int { return len(n.peers.Nodes()) },
		JetStreamReady: n.ns.JetStreamIsCurrent,
		StreamLeader: func() bool {
			return !n.ns.JetStreamIsClustered() || n.ns.JetStreamIsStreamLeader("$G", storage.StreamName)
		},
		SlowConsumers: func() uint64 { return uint64(n.ns.NumSlowConsumers()) },
	})
}

// Done is closed once the node has stopped, whoever stopped it.
func (n *Node) Done() <-chan struct{} { return n.stopped }

// serveDrain drains the node and answers once it has stopped. The
// listener closes during the drain; this request is answered all the same.
func (n *Node) serveDrain(w http.ResponseWriter, _ *http.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.DrainTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		http.Error(w, "drained with errors: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, "drained\n")
}

// localDevices lists user's connections on this node for presence.
func (n *Node) localDevices(user string) []presence.Device {
	var out []presence.Device
	for _, d := range n.hub.Online(user) {
		out = append(out, presence.Device{Node: n.cfg.Name, Session: d.Session, Transport: d.Transport})
	}
	return out
}

// clientAddr is where clients reach this node, for the node list.
func (n *Node) clientAddr() protocol.NodeAddr {
	host := func(addr string) string {
		h, port, _ := net.SplitHostPort(addr)
		if n.cfg.Advertise != "" {
			h = n.cfg.Advertise
		} else if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			h, _ = os.Hostname()
		}
		return net.JoinHostPort(h, port)
	}
	web := host(n.HTTPAddr())
	return protocol.NodeAddr{
		Name: n.cfg.Name, WS: "ws://" + web + "/ws", HTTP: "http://" + web, TCP: host(n.TCPAddr()),
	}
}

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// HTTPAddr is the address the HTTP API and WebSocket listen on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// TCPAddr is the address the TCP protocol listens on.
func (n *Node) TCPAddr() string { return n.tcpLn.Addr().String() }

// NATSURL is the URL services connect to, or "" when the port is off.
func (n *Node) NATSURL() string {
	if n.cfg.NATSAddr == "off" {
		return ""
	}
	return n.ns.ClientURL()
}

// Name is the node's name in the cluster.
func (n *Node) Name() string { return n.cfg.Name }

// ID is the node's ID, stable for its data directory.
func (n *Node) ID() string { return n.nodeID }

func (n *Node) readyErr() error {
	switch {
	case !n.ready.Load():
		return errors.New("node is starting or stopping")
	case !n.ns.Running() || !n.ns.JetStreamEnabled():
		return errors.New("embedded NATS or JetStream is not running")
	case !n.ns.JetStreamIsCurrent():
		return errors.New("JetStream is not in touch with a cluster leader")
	case n.pub.Status() != nats.CONNECTED:
		return errors.New("store connection is not connected")
	}
	return nil
}

// Shutdown stops the node gracefully: it stops accepting, lets every
// in-flight send finish and be acknowledged, closes client connections
// with the reason shutting_down, and stops the embedded server, which
// flushes the store. It returns when done or when ctx ends, after which
// remaining connections are cut. Calling it again returns the first
// result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.stopErr = n.shutdown(ctx)
		close(n.stopped)
	})
	<-n.stopped
	return n.stopErr
}

func (n *Node) shutdown(ctx context.Context) error {
	n.ready.Store(false)
	n.log.Info("draining")
	var errs []error
	n.peers.leave()
	_ = n.tcpLn.Close()
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	n.svc.stop()
	if err := n.hub.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	n.tcpSrv.Wait()
	n.peers.stop()
	n.lameDuck = n.cfg.Cluster != ""
	n.teardown()
	n.log.Info("stopped")
	return errors.Join(errs...)
}

// teardown stops whatever has been started, in reverse order.
func (n *Node) teardown() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.httpSrv != nil {
		_ = n.httpSrv.Close()
	} else if n.httpLn != nil {
		_ = n.httpLn.Close()
	}
	if n.tcpLn != nil {
		_ = n.tcpLn.Close()
	}
	if n.pprofLn != nil {
		_ = n.pprofLn.Close()
	}
	if n.adminLn != nil {
		_ = n.adminLn.Close()
	}
	if n.metricsLn != nil {
		_ = n.metricsLn.Close()
	}
	n.bg.Wait()
	if n.live != nil {
		n.live.Wait()
	}
	for _, nc := range n.shard {
		nc.Close()
	}
	if n.inbox != nil {
		n.inbox.Close()
	}
	if n.pub != nil {
		n.pub.Close()
	}
	if n.ns != nil {
		if n.lameDuck {
			// Hands the stream's and the meta group's leadership to
			// peers before leaving, so writes pause for a moment
			// rather than for an election timeout. The node's own
			// connections are closed by now, which keeps it short.
			n.ns.LameDuckShutdown()
		}
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	if n.meta != nil {
		_ = n.meta.Close()
	}
}
