package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS starts the embedded NATS server with JetStream and waits until
// it accepts connections.
func startNATS(cfg *Config, serverName string) (*server.Server, error) {
	opts := &server.Options{
		ServerName: serverName,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		NoSigs:     true, // the node handles signals
		NoLog:      false,
	}
	if cfg.NATSAddr == "off" {
		opts.DontListen = true
	} else {
		host, port, err := splitNATSAddr(cfg.NATSAddr)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	always, every, err := parseFsync(cfg.Fsync)
	if err != nil {
		return nil, err
	}
	opts.SyncAlways, opts.SyncInterval = always, every

	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
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
			return nil, fmt.Errorf("nats: %w", err)
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, errors.New("nats: server not ready after 30s")
		}
	}
	if err := logger.fatal(); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return ns, nil
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
func (l *natsLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }
func (l *natsLogger) Tracef(string, ...any)           {}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	l.mu.Lock()
	if l.err == nil {
		l.err = errors.New(msg)
	}
	l.mu.Unlock()
}
