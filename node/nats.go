package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS starts the embedded NATS server with JetStream and waits until
// it accepts connections.
func startNATS(cfg *Config) (*server.Server, *natsLogger, error) {
	opts, err := natsOptions(cfg)
	if err != nil {
		return nil, nil, err
	}

	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: %w", err)
	}
	logger := &natsLogger{log: cfg.Log.With("component", "nats")}
	ns.SetLoggerV2(logger, false, false, false)
	go ns.Start()
	// Poll, so that a fatal start-up error (a port in use) ends the wait
	// at once instead of after the whole timeout.
	deadline := time.Now().Add(30 * time.Second)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if err := logger.fatal(); err != nil {
			ns.Shutdown()
			return nil, nil, fmt.Errorf("nats: %w", err)
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, nil, errors.New("nats: server not ready after 30s")
		}
	}
	if err := logger.fatal(); err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("nats: %w", err)
	}
	return ns, logger, nil
}

// Route liveness: a peer that stops answering pings is dropped after
// about routePing × (routeMaxPingsOut+1), and its users stop counting as
// online. The default (2 minutes, 2 pings) would keep a crashed node's
// users online for up to 6 minutes.
const (
	routePing        = 3 * time.Second
	routeMaxPingsOut = 3
)

// Lame duck timing, for the NATS side of a drain: clients of the NATS
// port (services) are told to move during the grace period and cut over
// the duration after it.
const (
	lameDuckGrace    = 2 * time.Second
	lameDuckDuration = 3 * time.Second
)

func natsOptions(cfg *Config) (*server.Options, error) {
	opts := &server.Options{
		ServerName:          cfg.Name,
		JetStream:           true,
		StoreDir:            filepath.Join(cfg.DataDir, "nats"),
		NoSigs:              true, // the node handles signals
		LameDuckGracePeriod: lameDuckGrace,
		LameDuckDuration:    lameDuckDuration,
	}
	switch {
	case cfg.NATSAddr != "off":
		host, port, err := splitNATSAddr(cfg.NATSAddr)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	case cfg.Cluster != "":
		// With routes, DontListen keeps the route listener from ever
		// starting (nats-server waits for the client listener first), so
		// a clustered node listens on a loopback port nobody is told of.
		opts.Host, opts.Port = "127.0.0.1", -1
	default:
		opts.DontListen = true
	}
	always, every, err := parseFsync(cfg.Fsync)
	if err != nil {
		return nil, err
	}
	opts.SyncAlways, opts.SyncInterval = always, every
	if cfg.NATSTLS.Enabled() {
		if opts.TLSConfig, err = tlsConfig(cfg.NATSTLS); err != nil {
			return nil, fmt.Errorf("--nats-tls: %w", err)
		}
		opts.TLSVerify = cfg.NATSTLS.CA != ""
		opts.TLSTimeout = 5
	}
	if cfg.Cluster == "" {
		return opts, nil
	}
	host, port, err := splitNATSAddr(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	opts.Cluster = server.ClusterOpts{
		Name:         cfg.ClusterName,
		Host:         host,
		Port:         port,
		Advertise:    cfg.ClusterAdvertise,
		Username:     cfg.ClusterUser,
		Password:     cfg.ClusterPassword,
		PingInterval: routePing,
		MaxPingsOut:  routeMaxPingsOut,
	}
	if cfg.ClusterUser != "" {
		opts.Cluster.AuthTimeout = 5
	}
	if cfg.ClusterTLS.Enabled() {
		if opts.Cluster.TLSConfig, err = tlsConfig(cfg.ClusterTLS); err != nil {
			return nil, fmt.Errorf("--cluster-tls: %w", err)
		}
		opts.Cluster.TLSTimeout = 5
	}
	for _, r := range cfg.Routes {
		u, err := routeURL(r, cfg.ClusterUser, cfg.ClusterPassword)
		if err != nil {
			return nil, err
		}
		opts.Routes = append(opts.Routes, u)
	}
	return opts, nil
}

func tlsConfig(f TLSFiles) (*tls.Config, error) {
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: f.Cert, KeyFile: f.Key, CaFile: f.CA, Verify: f.CA != "",
	})
	if err != nil {
		return nil, err
	}
	// A route is dialled as well as accepted: the CA verifies the peer's
	// server certificate too.
	c.RootCAs = c.ClientCAs
	return c, nil
}

// connect opens an in-process connection to the embedded server.
func connect(ns *server.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect("",
		nats.InProcessServer(ns),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats async error", "conn", name, "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats async error", "conn", name, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", name, err)
	}
	return nc, nil
}

// natsLogger sends nats-server's log to slog. Fatalf is recorded so that
// start-up fails instead of leaving a half-started server.
type natsLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	err error
}

func (l *natsLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// logf formats only when the level is on. nats-server's notices are
// start-up chatter, logged at debug.
func (l *natsLogger) logf(level slog.Level, format string, v []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

func (l *natsLogger) Noticef(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }

// Errorf logs an error. Two are special: dialling a route that is not up
// yet is routine while a cluster starts (the node warns while it waits),
// and a duplicate server name means this node's --name is taken, which
// ends its start-up.
func (l *natsLogger) Errorf(format string, v ...any) {
	switch {
	case strings.HasPrefix(format, "Error trying to connect to route"):
		l.logf(slog.LevelDebug, format, v)
		return
	case strings.Contains(fmt.Sprintf(format, v...), "duplicate name"):
		l.mu.Lock()
		if l.err == nil {
			l.err = errors.New("another node in the cluster already runs under this --name")
		}
		l.mu.Unlock()
	}
	l.logf(slog.LevelError, format, v)
}
func (l *natsLogger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l *natsLogger) Tracef(string, ...any)          {}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	l.mu.Lock()
	if l.err == nil {
		l.err = errors.New(msg)
	}
	l.mu.Unlock()
}
