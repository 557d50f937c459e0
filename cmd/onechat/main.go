// Command onechat runs an onechat node, or prints a client token.
//
//	onechat [flags]                    run a node
//	onechat token [flags] USER         print a token for USER
//	onechat drain [flags]              drain a node through its --admin listener
//	onechat smoke [flags]              send a message through a running node
//	onechat version                    print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "token":
		err = tokenCmd(args[1:])
	case len(args) > 0 && args[0] == "smoke":
		err = smokeCmd(args[1:])
	case len(args) > 0 && args[0] == "drain":
		err = drainCmd(args[1:])
	case len(args) > 0 && args[0] == "version":
		fmt.Println("onechat", version)
	case len(args) > 0 && args[0] == "serve":
		err = serveCmd(args[1:])
	default:
		err = serveCmd(args)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "onechat:", err)
		os.Exit(1)
	}
}

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("onechat", flag.ContinueOnError)
	var cfg node.Config
	fs.StringVar(&cfg.DataDir, "data", node.DefaultDataDir,
		"data directory (JetStream store, metadata, generated secret)")
	fs.StringVar(&cfg.HTTPAddr, "http", ":8080", "HTTP API and WebSocket (/ws) listen address")
	fs.StringVar(&cfg.TCPAddr, "tcp", ":7070", "TCP protocol listen address")
	fs.StringVar(&cfg.NATSAddr, "nats", "127.0.0.1:4222", "NATS client listen address for services, or \"off\"")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "",
		"HS256 secret for client tokens (default: generated in the data directory)")
	fs.DurationVar(&cfg.Retention, "retention", 30*24*time.Hour, "how long messages are kept")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", 2*time.Minute, "how long a send ref deduplicates retries")
	fs.StringVar(&cfg.Fsync, "fsync", "",
		"JetStream fsync: \"always\", an interval such as 1s, or empty for JetStream's default (2m)")
	fs.IntVar(&cfg.Session.MaxFrame, "max-frame", 64<<10, "largest client frame in bytes")
	fs.DurationVar(&cfg.Session.PingInterval, "ping-interval", 25*time.Second, "ping interval told to clients")
	fs.DurationVar(&cfg.Session.IdleTimeout, "idle-timeout", 60*time.Second,
		"close connections silent this long")
	fs.DurationVar(&cfg.Session.AuthTimeout, "auth-timeout", 10*time.Second,
		"close connections not authenticated this long")
	fs.Float64Var(&cfg.Session.SendRate, "send-rate", 100, "sends per second per connection (-1: no limit)")
	fs.IntVar(&cfg.Session.SendBurst, "send-burst", 200, "sends allowed in a burst above --send-rate")
	fs.IntVar(&cfg.Session.MaxConnsPerUser, "max-conns-per-user", 32, "connections per user on one node")
	fs.StringVar(&cfg.Name, "name", "",
		"node name, unique in the cluster and stable across restarts (default: host name)")
	fs.StringVar(&cfg.Cluster, "cluster", "", "route listen address (e.g. :6222); set to form a cluster")
	routes := fs.String("routes", "", "comma-separated seed routes, e.g. nats://node1:6222,nats://node2:6222")
	fs.StringVar(&cfg.ClusterName, "cluster-name", "onechat", "NATS cluster name; the same on every node")
	fs.StringVar(&cfg.ClusterAdvertise, "cluster-advertise", "",
		"route host:port peers dial, if not the listen address")
	fs.StringVar(&cfg.ClusterUser, "cluster-user", "", "user name routes must present")
	fs.StringVar(&cfg.ClusterPassword, "cluster-password", "", "password routes must present")
	fs.StringVar(&cfg.ClusterTLS.Cert, "cluster-tls-cert", "", "route TLS certificate (PEM)")
	fs.StringVar(&cfg.ClusterTLS.Key, "cluster-tls-key", "", "route TLS key (PEM)")
	fs.StringVar(&cfg.ClusterTLS.CA, "cluster-tls-ca", "", "CA that route certificates must chain to (PEM)")
	fs.StringVar(&cfg.NATSTLS.Cert, "nats-tls-cert", "", "NATS client port TLS certificate (PEM)")
	fs.StringVar(&cfg.NATSTLS.Key, "nats-tls-key", "", "NATS client port TLS key (PEM)")
	fs.StringVar(&cfg.NATSTLS.CA, "nats-tls-ca", "", "CA that NATS clients' certificates must chain to (PEM)")
	fs.BoolVar(&cfg.AllowShrink, "allow-shrink", false,
		"let this node lower the shared message stream's retention, message size or replicas for all nodes")
	fs.IntVar(&cfg.Replicas, "replicas", 0, "inbox stream replicas (default: 1 alone, 3 with --cluster)")
	fs.StringVar(&cfg.Advertise, "advertise", "",
		"host clients reach this node at, in the node list sent to them (default: listen host or host name)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 20*time.Second,
		"on SIGTERM, how long connections get to finish before they are cut")
	fs.StringVar(&cfg.AdminAddr, "admin", "",
		"serve POST /drain here for `onechat drain` (a preStop hook); no auth: keep it on loopback")
	fs.StringVar(&cfg.Metrics, "metrics", "http",
		"Prometheus metrics: \"http\" (at /metrics on --http), \"off\", or a host:port of their own")
	fs.StringVar(&cfg.PprofAddr, "pprof", "",
		"serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off when empty")
	configFile := fs.String("config", "",
		"YAML file of settings keyed by flag name; flags and environment win over it")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = usage(fs, "onechat [flags]\n       onechat token [flags] USER\n"+
		"       onechat drain [flags]\n       onechat smoke [flags]\n       onechat version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see onechat --help)", fs.Arg(0))
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return err
		}
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	cfg.Log = log
	for _, r := range strings.Split(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Routes = append(cfg.Routes, r)
		}
	}
	return serve(cfg)
}

func serve(cfg node.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		cfg.Log.Info("stopped before the node was ready", "reason", err)
		return nil // asked to stop while waiting, for its cluster say
	}
	if err != nil {
		return err
	}
	cfg.Log.Info("onechat is ready", "name", n.Name(),
		"http", n.HTTPAddr(), "websocket", "ws://"+n.HTTPAddr()+"/ws",
		"tcp", n.TCPAddr(), "nats", n.NATSURL(), "data", cfg.DataDir)
	if cfg.JWTSecret == "" {
		cfg.Log.Info("get a client token with: onechat token --data " + cfg.DataDir + " <user>")
	} else {
		cfg.Log.Info("get a client token with: onechat token --jwt-secret <the secret> <user> " +
			"(or with ONECHAT_JWT_SECRET set)")
	}
	select {
	case <-ctx.Done():
	case <-n.Done(): // drained through --admin
		return nil
	}
	stop() // a second signal now ends the process at once
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	return n.Shutdown(shutdownCtx)
}

// drainCmd asks a node, through its --admin listener, to drain and stop,
// and waits until it has. A Kubernetes preStop hook runs it.
func drainCmd(args []string) error {
	fs := flag.NewFlagSet("onechat drain", flag.ContinueOnError)
	addr := fs.String("admin", "127.0.0.1:9091", "the node's --admin address")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the node to stop")
	fs.Usage = usage(fs, "onechat drain [flags]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Post("http://"+*addr+"/drain", "text/plain", nil)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("drain: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Print(string(body))
	return nil
}

func tokenCmd(args []string) error {
	fs := flag.NewFlagSet("onechat token", flag.ContinueOnError)
	dataDir := fs.String("data", node.DefaultDataDir, "data directory of the node the token is for")
	secret := fs.String("jwt-secret", "", "HS256 secret (default: the one in the data directory)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	fs.Usage = usage(fs, "onechat token [flags] USER")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Flags may also follow the user ID.
	user := fs.Arg(0)
	if fs.NArg() > 0 {
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if user == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("token needs exactly one user ID")
	}
	if *secret == "" && !auth.HasSecretFile(*dataDir) {
		fmt.Fprintf(os.Stderr, "onechat: no secret in %s yet; created one. "+
			"A node uses it only when started with --data %s and no --jwt-secret.\n", *dataDir, *dataDir)
	}
	key, err := auth.LoadSecret(*secret, *dataDir)
	if err != nil {
		return err
	}
	tok, err := auth.Sign(key, user, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
