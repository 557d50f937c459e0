package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/session"
	"github.com/onechat/onechat/storage"
	"github.com/onechat/onechat/transport/httpapi"
	"github.com/onechat/onechat/transport/tcp"
	"github.com/onechat/onechat/transport/ws"
)

// Node is one running onechat node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	nodeID string

	meta  *storage.Meta
	ns    *server.Server
	pub   *nats.Conn   // JetStream API and publishes
	shard []*nats.Conn // live subscriptions
	inbox *storage.Inbox
	hub   *session.Hub
	live  *bus.Live
	svc   *service

	httpLn  net.Listener
	tcpLn   net.Listener
	pprofLn net.Listener
	httpSrv *http.Server
	tcpSrv  *tcp.Server

	cancel   context.CancelFunc
	bg       sync.WaitGroup
	ready    atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// Start starts a node and returns once it serves every listener. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node: invalid configuration:\n%w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Log}
	for _, step := range []func() error{
		func() error { return n.openStores(ctx) },
		func() error { return n.startCore(ctx) },
		n.listen,
	} {
		if err := step(); err != nil {
			n.teardown()
			return nil, err
		}
	}
	n.ready.Store(true)
	return n, nil
}

func (n *Node) openStores(ctx context.Context) error {
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
	n.log = n.log.With("node", n.nodeID)
	n.cfg.Log = n.log
	if n.ns, err = startNATS(&n.cfg, "onechat-"+n.nodeID); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.pub, err = connect(n.ns, "onechat-pub", n.log); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	js, err := jetstream.New(n.pub)
	if err != nil {
		return fmt.Errorf("node: jetstream: %w", err)
	}
	n.inbox, err = storage.OpenInbox(ctx, js, storage.InboxConfig{
		Retention:   n.cfg.Retention,
		DedupWindow: n.cfg.DedupWindow,
		// Room for the envelope's id, names and escapes around a body
		// that filled a whole frame.
		MaxMsgSize: int32(n.cfg.Session.MaxFrame + 4096),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

func (n *Node) startCore(ctx context.Context) error {
	secret, err := auth.LoadSecret(n.cfg.JWTSecret, n.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	verifier := auth.NewVerifier(secret)
	n.hub = session.NewHub(session.HubDeps{
		Config: n.cfg.Session, Log: n.log, NodeID: n.nodeID, Verifier: verifier, Inbox: n.inbox,
	})
	for i := range n.cfg.LiveShards {
		nc, err := connect(n.ns, fmt.Sprintf("onechat-live-%d", i), n.log)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.shard = append(n.shard, nc)
	}
	n.live = bus.NewLive(bus.LiveConfig{Conns: n.shard, Buffer: n.cfg.LiveBuffer, Handle: n.hub.DeliverLive})
	n.hub.SetLive(n.live)

	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.live.Run(bg)
	n.bg.Go(func() { n.hub.Run(bg) })

	n.svc = newService(n.hub, n.log, n.cfg.ServiceWorkers)
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
	n.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.tcpSrv = tcp.NewServer(n.hub, n.log, tcp.Config{
		MaxFrame: n.cfg.Session.MaxFrame, WriteTimeout: n.cfg.Session.WriteTimeout,
	})
	return nil
}

func (n *Node) listen() error {
	var err error
	if n.httpLn, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("node: listen http (--http): %w", err)
	}
	if n.tcpLn, err = net.Listen("tcp", n.cfg.TCPAddr); err != nil {
		return fmt.Errorf("node: listen tcp (--tcp): %w", err)
	}
	n.bg.Go(func() {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	n.bg.Go(func() {
		if err := n.tcpSrv.Serve(n.tcpLn); err != nil {
			n.log.Error("tcp server stopped", "err", err)
		}
	})
	if n.cfg.PprofAddr != "" {
		if n.pprofLn, err = net.Listen("tcp", n.cfg.PprofAddr); err != nil {
			return fmt.Errorf("node: listen pprof (--pprof): %w", err)
		}
		n.bg.Go(func() { _ = http.Serve(n.pprofLn, pprofMux()) })
		n.log.Info("serving pprof", "addr", n.pprofLn.Addr().String())
	}
	return nil
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

// ID is the node's ID, stable for its data directory.
func (n *Node) ID() string { return n.nodeID }

func (n *Node) readyErr() error {
	switch {
	case !n.ready.Load():
		return errors.New("node is starting or stopping")
	case !n.ns.Running() || !n.ns.JetStreamEnabled():
		return errors.New("embedded NATS or JetStream is not running")
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
	n.stopOnce.Do(func() { n.stopErr = n.shutdown(ctx) })
	return n.stopErr
}

func (n *Node) shutdown(ctx context.Context) error {
	n.ready.Store(false)
	n.log.Info("shutting down")
	var errs []error
	_ = n.tcpLn.Close()
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	n.svc.stop()
	if err := n.hub.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	n.tcpSrv.Wait()
	n.teardown()
	n.log.Info("stopped")
	return errors.Join(errs...)
}

// teardown stops whatever has been started, in reverse order.
func (n *Node) teardown() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.httpLn != nil {
		_ = n.httpLn.Close()
	}
	if n.tcpLn != nil {
		_ = n.tcpLn.Close()
	}
	if n.pprofLn != nil {
		_ = n.pprofLn.Close()
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
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	if n.meta != nil {
		_ = n.meta.Close()
	}
}
