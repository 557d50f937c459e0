package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/onechat/onechat/node"
)

func shortTimeouts(c *node.Config) {
	c.Session.PingInterval = 500 * time.Millisecond
	c.Session.IdleTimeout = 2 * time.Second
	c.Session.AuthTimeout = 2 * time.Second
}

// A silent connection is closed with idle_timeout on both transports; a
// pinging one stays; the silent user catches up on the next connect.
func TestIdleTimeout(t *testing.T) {
	tn := startNode(t, shortTimeouts)
	quietTCP := tn.tcp(t, "quiet-tcp")
	if ok := quietTCP.auth("bob"); ok.Ping != 500 || ok.Timeout != 2000 {
		t.Fatalf("ok frame %+v does not tell the intervals", ok)
	}
	quietWS := tn.ws(t, "quiet-ws")
	quietWS.auth("carol")
	busy := tn.ws(t, "busy")
	busy.auth("alice")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = busy.write([]byte(`{"op":"ping"}`))
			}
		}
	})
	quietTCP.expectError("idle_timeout")
	quietTCP.ended()
	quietWS.expectError("idle_timeout")
	if code := websocket.CloseStatus(quietWS.ended()); code != 4002 {
		t.Fatalf("ws close code %d, want 4002", code)
	}
	close(stop)
	wg.Wait()

	// The pinging client outlived the quiet ones and still works.
	busy.send(map[string]any{"op": "send", "ref": "m", "to": "bob", "body": text("while away")})
	for f := busy.next(); f.Op != "ack"; f = busy.next() {
		if f.Op != "pong" {
			t.Fatalf("busy got %+v", f)
		}
	}
	back := tn.tcp(t, "bob-again")
	back.send(map[string]any{"op": "auth", "token": token(t, "bob"), "after": 0})
	back.expect("ok")
	if m := back.expect("msg"); bodyText(t, m) != "while away" {
		t.Fatalf("bob got %+v", m)
	}
}

func TestAuthTimeout(t *testing.T) {
	tn := startNode(t, shortTimeouts)
	c := tn.tcp(t, "never-auths")
	// Pings do not keep an unauthenticated connection open.
	for range 3 {
		c.alive()
		time.Sleep(500 * time.Millisecond)
	}
	c.expectError("auth_required")
	c.ended()
}

func TestTokenExpiryClosesConnection(t *testing.T) {
	tn := startNode(t)
	c := tn.ws(t, "short-lived")
	c.send(map[string]string{"op": "auth", "token": tokenTTL(t, "alice", 2*time.Second)})
	c.expect("ok")
	c.expectError("token_expired")
	if code := websocket.CloseStatus(c.ended()); code != 4001 {
		t.Fatalf("close code %d, want 4001", code)
	}

	// A refresh on the connection extends it.
	r := tn.tcp(t, "refreshes")
	r.send(map[string]string{"op": "auth", "token": tokenTTL(t, "alice", 2*time.Second)})
	r.expect("ok")
	r.send(map[string]string{"op": "auth", "token": tokenTTL(t, "alice", time.Hour)})
	if ok := r.expect("ok"); ok.User != "alice" {
		t.Fatalf("refresh %+v", ok)
	}
	time.Sleep(3 * time.Second)
	r.alive()
}

// Shutdown while clients send: every acknowledged message is in the store
// after a restart, and a retry of an unacknowledged one with its ref
// stores it at most once.
func TestShutdownLosesNoAcknowledgedMessage(t *testing.T) {
	tn := startNode(t)
	const senders = 4
	type result struct {
		acked map[string]string // ref -> id
		tried []string
	}
	results := make([]result, senders)
	var wg sync.WaitGroup
	for i := range senders {
		c := tn.tcp(t, "sender-"+strconv.Itoa(i))
		c.auth("s" + strconv.Itoa(i))
		results[i].acked = map[string]string{}
		wg.Go(func() {
			for n := 0; ; n++ {
				ref := refN("m", n)
				if c.write([]byte(`{"op":"send","ref":"`+ref+`","to":"bob","body":1}`)) != nil {
					return
				}
				results[i].tried = append(results[i].tried, ref)
				select {
				case f := <-c.frames:
					if f.Op != "ack" {
						return // the shutting_down error
					}
					results[i].acked[ref] = f.ID
				case <-c.done:
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	tn.restart(t)
	wg.Wait()

	stored := map[string]bool{}
	bob := tn.tcp(t, "bob")
	bob.send(map[string]any{"op": "auth", "token": token(t, "bob"), "after": 0})
	bob.expect("ok")
	for f := bob.next(); f.Op != "synced"; f = bob.next() {
		if stored[f.ID] {
			t.Fatalf("message %s stored twice", f.ID)
		}
		stored[f.ID] = true
	}
	total := 0
	for i, r := range results {
		for ref, id := range r.acked {
			if !stored[id] {
				t.Fatalf("sender %d: acknowledged %s (%s) is lost", i, ref, id)
			}
		}
		total += len(r.acked)
	}
	if total == 0 {
		t.Fatal("no message was acknowledged before the shutdown")
	}
	// Retrying the last attempt of each sender adds nothing that was
	// already stored.
	for i, r := range results {
		if len(r.tried) == 0 {
			continue
		}
		c := tn.tcp(t, "retry-"+strconv.Itoa(i))
		c.auth("s" + strconv.Itoa(i))
		ref := r.tried[len(r.tried)-1]
		ack := c.sendTo("bob", ref, 1)
		if id, ok := r.acked[ref]; ok && (ack.ID != id || !ack.Dup) {
			t.Fatalf("retry of acked %s: %+v, want id %s dup", ref, ack, id)
		}
	}
	if len(stored) < total {
		t.Fatalf("stored %d < acked %d", len(stored), total)
	}
}

func TestHealthEndpoints(t *testing.T) {
	tn := startNode(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _ := tn.httpDo(t, "GET", path, "", ""); status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
	}
}

// A WebSocket ping long after the node's last write still gets its pong
// (the pong once inherited an expired write deadline and failed).
func TestWebSocketPingAfterWriteTimeout(t *testing.T) {
	tn := startNode(t, func(c *node.Config) { c.Session.WriteTimeout = 300 * time.Millisecond })
	c := tn.ws(t, "pinger")
	c.auth("alice")
	time.Sleep(time.Second) // past the deadline set by the last write
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.wsPing(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	c.alive()
}

// A node that cannot start returns an error saying why and leaves nothing
// running (it once panicked in its own clean-up instead).
func TestStartFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	running := startNode(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		tweak func(*node.Config)
		want  string
	}{
		{"short secret", func(c *node.Config) { c.JWTSecret = "short" }, "jwt secret"},
		{"http port in use", func(c *node.Config) { c.HTTPAddr = busy.Addr().String() }, "--http"},
		{"tcp port in use", func(c *node.Config) { c.TCPAddr = busy.Addr().String() }, "--tcp"},
		{"nats port in use", func(c *node.Config) { c.NATSAddr = busy.Addr().String() }, "nats"},
		{"data dir in use", func(c *node.Config) { c.DataDir = running.cfg.DataDir }, "in use"},
		{"data dir is a file", func(c *node.Config) { c.DataDir = notDir }, "data directory"},
		{"bad port", func(c *node.Config) { c.HTTPAddr = "127.0.0.1:99999" }, "--http"},
		{"cluster without a shared secret", func(c *node.Config) {
			c.Cluster, c.JWTSecret = "127.0.0.1:0", ""
		}, "--jwt-secret"},
		{"bad route", func(c *node.Config) {
			c.Cluster, c.Routes = "127.0.0.1:0", []string{"node2:6222"}
		}, "--routes entry"},
		{"routes without cluster", func(c *node.Config) { c.Routes = []string{"nats://a:6222"} }, "--cluster"},
		{"too many replicas", func(c *node.Config) { c.Cluster, c.Replicas = "127.0.0.1:0", 9 }, "--replicas"},
		{"negative replicas", func(c *node.Config) { c.Replicas = -1 }, "--replicas"},
		{"cluster without routes", func(c *node.Config) { c.Cluster = "127.0.0.1:0" }, "--routes"},
		{"route user without password", func(c *node.Config) {
			c.Cluster, c.ClusterUser = "127.0.0.1:0", "route"
		}, "--cluster-password"},
		{"missing TLS file", func(c *node.Config) {
			c.Cluster, c.Routes = "127.0.0.1:0", []string{"nats://127.0.0.1:1"}
			c.ClusterTLS = node.TLSFiles{Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
		}, "--cluster-tls"},
		{"TLS key without cert", func(c *node.Config) { c.NATSTLS.Key = "k.pem" }, "--nats-tls-cert"},
		// Checked before the node joins a cluster, where a failed node
		// would linger as a dead peer; these once waited for peers.
		{"short secret in a cluster", func(c *node.Config) {
			c.Cluster, c.Routes, c.JWTSecret = "127.0.0.1:0", []string{"nats://127.0.0.1:1"}, "short"
		}, "jwt secret"},
		{"tcp port in use in a cluster", func(c *node.Config) {
			c.Cluster, c.Routes = "127.0.0.1:0", []string{"nats://127.0.0.1:1"}
			c.TCPAddr = busy.Addr().String()
		}, "--tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
				NATSAddr: "127.0.0.1:0", JWTSecret: testSecret, Log: testLogger(t)}
			tc.tweak(&cfg)
			n, err := node.Start(context.Background(), cfg)
			if err == nil {
				n.Shutdown(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	running.alive(t)
}

// A clustered node's data directory keeps its name: JetStream knows the
// node's replicas by it.
func TestRenamedClusterNodeRefused(t *testing.T) {
	cfg := node.Config{Name: "n1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
		NATSAddr: "127.0.0.1:0", Cluster: "127.0.0.1:0", Routes: []string{"nats://127.0.0.1:1"},
		JWTSecret: testSecret, Log: testLogger(t)}
	// Alone, it waits for peers that never come; it has claimed its name.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if n, err := node.Start(ctx, cfg); err == nil {
		n.Shutdown(context.Background())
		t.Fatal("a lone clustered node started")
	}
	cfg.Name = "n1-renamed"
	_, err := node.Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `belongs to node "n1"`) {
		t.Fatalf("renamed: %v", err)
	}
}

// Session IDs mark a sender's stored copies, so a restarted node must not
// hand out an ID its previous run used; it once restarted from 1.
func TestSessionIDsNotReusedAfterRestart(t *testing.T) {
	tn := startNode(t)
	c := tn.tcp(t, "a")
	before := c.auth("a").Session
	c.close()
	tn.restart(t)
	c = tn.tcp(t, "b")
	if after := c.auth("b").Session; after == before || after == "" {
		t.Fatalf("session %q before the restart, %q after", before, after)
	}
}

// A token expiring past 2262 (beyond int64 nanoseconds) keeps its
// connection open; it was once closed as expired within a second.
func TestFarFutureTokenExpiry(t *testing.T) {
	tn := startNode(t)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": int64(9999999999),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	c := tn.tcp(t, "far")
	c.send(map[string]string{"op": "auth", "token": tok})
	c.expect("ok")
	time.Sleep(2500 * time.Millisecond) // two sweeps
	c.alive()
}

// POST /drain on the admin listener drains the node like SIGTERM: clients
// are told shutting_down, the answer comes once the node has stopped, and
// Done is closed.
func TestAdminDrain(t *testing.T) {
	port := freePorts(t, 1)[0]
	admin := fmt.Sprintf("127.0.0.1:%d", port)
	tn := startNode(t, func(c *node.Config) { c.AdminAddr = admin })
	c := tn.tcp(t, "alice")
	c.auth("alice")
	if resp, err := http.Get("http://" + admin + "/drain"); err != nil || resp.StatusCode != 405 {
		t.Fatalf("GET /drain: %v %v", resp, err)
	}
	resp, err := http.Post("http://"+admin+"/drain", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "drained\n" {
		t.Fatalf("POST /drain: %d %q", resp.StatusCode, body)
	}
	c.expectError("shutting_down")
	select {
	case <-tn.Done():
	default:
		t.Fatal("Done not closed after the drain")
	}
}
