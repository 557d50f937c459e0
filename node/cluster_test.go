package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/node"
)

// freePorts returns n ports that were free a moment ago. Route ports must
// be known before any node starts, as every node lists them all.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startCluster starts size in-process nodes, n0..n{size-1}, routed to each
// other, and waits until all serve.
func startCluster(t testing.TB, size int, tweak ...func(i int, c *node.Config)) []*testNode {
	t.Helper()
	ports := freePorts(t, size)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*testNode, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		cfg := node.Config{
			Name:      fmt.Sprintf("n%d", i),
			DataDir:   t.TempDir(),
			HTTPAddr:  "127.0.0.1:0",
			TCPAddr:   "127.0.0.1:0",
			NATSAddr:  "127.0.0.1:0",
			Cluster:   fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes:    routes,
			JWTSecret: testSecret,
			Log:       testLogger(t),
		}
		for _, f := range tweak {
			f(i, &cfg)
		}
		nodes[i] = &testNode{cfg: cfg}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			nodes[i].Node, errs[i] = node.Start(ctx, cfg)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start n%d: %v", i, err)
		}
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, tn := range nodes {
			wg.Go(func() { tn.stop(t) })
		}
		wg.Wait()
	})
	return nodes
}

// natsClient connects an independent NATS client to a node's client port.
func natsClient(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("nats connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// streamLeader asks JetStream which node leads the inbox stream.
func streamLeader(t testing.TB, nc *nats.Conn) string {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "OC_INBOX")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	return info.Cluster.Leader
}

// Every sending transport on one node reaches every receiving transport
// on another, and a user's devices on different nodes each get every
// message once. Routes run with TLS and credentials.
func TestClusterDeliveryAcrossNodes(t *testing.T) {
	t.Parallel()
	tlsDir := writeTestPKI(t)
	nodes := startCluster(t, 3, func(_ int, c *node.Config) {
		c.ClusterUser, c.ClusterPassword = "route", "route-secret"
		c.ClusterTLS = node.TLSFiles{Cert: tlsDir + "/node.pem", Key: tlsDir + "/node-key.pem",
			CA: tlsDir + "/ca.pem"}
	})
	streamLeader(t, natsClient(t, nodes[0].NATSURL()))

	type dial func(tn *testNode, user string) *client
	socket := map[string]dial{
		"ws": func(tn *testNode, user string) *client {
			c := tn.ws(t, user+"-ws")
			c.auth(user)
			return c
		},
		"tcp": func(tn *testNode, user string) *client {
			c := tn.tcp(t, user+"-tcp")
			c.auth(user)
			return c
		},
	}
	senders := []string{"ws", "tcp", "http", "nats"}
	receivers := []string{"ws", "tcp", "http"}
	i := 0
	for _, st := range senders {
		for _, rt := range receivers {
			i++
			from, to := nodes[i%3], nodes[(i+1)%3]
			sender, recipient := fmt.Sprintf("s%d-%s", i, st), fmt.Sprintf("r%d-%s", i, rt)
			var rc *client
			if rt != "http" {
				rc = socket[rt](to, recipient)
			}
			body := fmt.Sprintf("%s on %s to %s on %s", st, from.Name(), rt, to.Name())
			msg := map[string]any{"op": "send", "ref": "x", "to": recipient, "body": text(body)}
			var id string
			switch st {
			case "http":
				b, _ := json.Marshal(msg)
				status, ack := from.httpDo(t, "POST", "/v1/messages", sender, string(b))
				if status != 200 {
					t.Fatalf("%s: POST %d %+v", body, status, ack)
				}
				id = ack.ID
			case "nats":
				msg["from"] = sender
				b, _ := json.Marshal(msg)
				r, err := natsClient(t, from.NATSURL()).Request("oc.api.send", b, 5*time.Second)
				if err != nil {
					t.Fatalf("%s: %v", body, err)
				}
				var ack frame
				_ = json.Unmarshal(r.Data, &ack)
				id = ack.ID
			default:
				id = socket[st](from, sender).sendTo(recipient, "x", text(body)).ID
			}
			if rt == "http" {
				status, page := to.httpDo(t, "GET", "/v1/messages?after=0", recipient, "")
				if status != 200 || len(page.Msgs) != 1 || page.Msgs[0].ID != id {
					t.Fatalf("%s: GET %d %+v", body, status, page)
				}
				continue
			}
			if m := rc.expect("msg"); m.ID != id || bodyText(t, m) != body {
				t.Fatalf("%s: got %+v", body, m)
			}
		}
	}

	// One user on all three nodes; a sender on the first.
	var devices []*client
	for _, tn := range nodes {
		devices = append(devices, socket["ws"](tn, "multi"))
	}
	alice := socket["tcp"](nodes[0], "alice")
	for k := range 20 {
		alice.sendTo("multi", refN("m", k), text(refN("m", k)))
	}
	for _, d := range devices {
		for k := range 20 {
			if m := d.expect("msg"); bodyText(t, m) != refN("m", k) {
				t.Fatalf("%s: message %d is %q", d.name, k, bodyText(t, m))
			}
		}
		d.alive() // nothing more: each message came once
	}
	// And back from a device on another node.
	devices[2].sendTo("alice", "back", text("back"))
	if m := alice.expect("msg"); bodyText(t, m) != "back" {
		t.Fatalf("alice got %+v", m)
	}
}

// A message sent from another node right after a user's connection is
// accepted reaches that user live. The user's node is not the stream's
// leader, so the new subscription has to reach the leader first.
func TestClusterSendRightAfterConnect(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	leader := streamLeader(t, natsClient(t, nodes[0].NATSURL()))
	var at, from *testNode
	for _, tn := range nodes {
		switch {
		case tn.Name() == leader:
		case at == nil:
			at = tn
		default:
			from = tn
		}
	}
	sender := from.tcp(t, "sender")
	sender.auth("sender")
	for i := range 30 {
		user := refN("fresh", i)
		c := at.tcp(t, user)
		c.auth(user)
		ack := sender.sendTo(user, refN("r", i), text("hello"))
		if m := c.expect("msg"); m.ID != ack.ID {
			t.Fatalf("%s got %+v, want %s", user, m, ack.ID)
		}
		c.close()
	}
}

// Presence is answered by any node, lists devices on every node, and
// follows users as they come and go; events are published for both.
func TestClusterPresence(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	nc := natsClient(t, nodes[2].NATSURL())
	events, err := nc.SubscribeSync("oc.presence.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A service listening on every live subject must not make users
	// look online.
	if _, err := nc.Subscribe("oc.live.*", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}

	lookup := func(user string) (st presenceStatus) {
		t.Helper()
		r, err := nc.Request("oc.api.presence", []byte(`{"user":"`+user+`"}`), 5*time.Second)
		if err != nil {
			t.Fatalf("presence: %v", err)
		}
		if err := json.Unmarshal(r.Data, &st); err != nil {
			t.Fatalf("presence answer %q: %v", r.Data, err)
		}
		return st
	}
	if st := lookup("bob"); st.Online {
		t.Fatalf("bob online before connecting: %+v", st)
	}
	a := nodes[0].ws(t, "bob-ws")
	a.auth("bob")
	b := nodes[1].tcp(t, "bob-tcp")
	b.auth("bob")
	st := waitFor(t, 5*time.Second, func() (st presenceStatus, ok bool) {
		st = lookup("bob")
		return st, len(st.Devices) == 2
	})
	got := map[string]string{}
	for _, d := range st.Devices {
		got[d.Node] = d.Transport
	}
	if !st.Online || st.Partial || got["n0"] != "ws" || got["n1"] != "tcp" {
		t.Fatalf("presence %+v", st)
	}
	a.close()
	b.close()
	waitFor(t, 5*time.Second, func() (bool, bool) { return true, !lookup("bob").Online })

	seen := map[string]bool{}
	for len(seen) < 4 {
		m, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("presence events so far %v: %v", seen, err)
		}
		var ev struct {
			User, Node string
			Online     bool
		}
		_ = json.Unmarshal(m.Data, &ev)
		if m.Subject == "oc.presence.user.bob" {
			seen[fmt.Sprintf("%s/%v", ev.Node, ev.Online)] = true
		}
	}
	for _, k := range []string{"n0/true", "n1/true", "n0/false", "n1/false"} {
		if !seen[k] {
			t.Fatalf("no event %s in %v", k, seen)
		}
	}
}

// presenceStatus is the answer on oc.api.presence.
type presenceStatus struct {
	Online  bool `json:"online"`
	Partial bool `json:"partial"`
	Devices []struct {
		Node, Transport string
	} `json:"devices"`
}

// waitFor polls fn until it reports done or d passes.
func waitFor[T any](t testing.TB, d time.Duration, fn func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := fn()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s (last %+v)", d, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The ok frame lists every node, so a client knows where to go next. A
// node started under a name already in the cluster fails its start-up.
func TestClusterNodeList(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	dup := nodes[0].cfg
	dup.DataDir = t.TempDir()
	dup.HTTPAddr, dup.TCPAddr, dup.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	dup.Cluster = fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := node.Start(ctx, dup); err == nil || !strings.Contains(err.Error(), "--name") {
		if n != nil {
			n.Shutdown(context.Background())
		}
		t.Fatalf("a second n0: %v", err)
	}
	waitFor(t, 10*time.Second, func() (string, bool) {
		c := nodes[1].ws(t, "u")
		c.send(map[string]string{"op": "auth", "token": token(t, "u")})
		f := c.next()
		c.close()
		var names []string
		for _, n := range f.Nodes {
			if n.WS == "" || n.TCP == "" {
				return fmt.Sprintf("%+v", f.Nodes), false
			}
			names = append(names, n.Name)
		}
		s := strings.Join(names, ",")
		return s, s == "n0,n1,n2"
	})
}
