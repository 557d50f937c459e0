package node_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/node"
)

// Alice on WebSocket and Bob on TCP (twice) exchange messages both ways;
// every connection of the recipient and the sender's other connections
// get each message, the sending connection only its ack.
func TestChatAcrossTransports(t *testing.T) {
	tn := startNode(t)
	alice := tn.ws(t, "alice-ws")
	alice.auth("alice")
	bob := tn.tcp(t, "bob-tcp")
	bob.auth("bob")
	bob2 := dialWS(t, "ws://"+tn.HTTPAddr()+"/ws?token="+token(t, "bob"), "bob-ws", nil)
	if ok := bob2.expect("ok"); ok.User != "bob" {
		t.Fatalf("bob2 ok for %q", ok.User)
	}

	ack := alice.sendTo("bob", "a1", text("hi bob"))
	if ack.ID == "" || ack.Seq == 0 || ack.TS == 0 || ack.Ref != "a1" {
		t.Fatalf("ack %+v", ack)
	}
	for _, c := range []*client{bob, bob2} {
		m := c.expect("msg")
		if m.ID != ack.ID || m.From != "alice" || m.To != "bob" || bodyText(t, m) != "hi bob" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	back := bob.sendTo("alice", "b1", text("hi alice"))
	m := alice.expect("msg")
	if m.ID != back.ID || m.From != "bob" || bodyText(t, m) != "hi alice" {
		t.Fatalf("alice got %+v", m)
	}
	// Bob's other connection sees what Bob sent, with Bob's own seq.
	own := bob2.expect("msg")
	if own.ID != back.ID || own.Seq != back.Seq || own.To != "alice" {
		t.Fatalf("bob2 got %+v, want copy of %+v", own, back)
	}
	// The sending connection gets no copy: its next frame is the pong.
	bob.alive()
	alice.alive()
}

func TestHTTPSendReachesWebSocket(t *testing.T) {
	tn := startNode(t)
	alice := dialWS(t, "ws://"+tn.HTTPAddr()+"/ws", "alice", http.Header{
		"Authorization": {"Bearer " + token(t, "alice")},
	})
	alice.expect("ok")

	status, ack := tn.httpDo(t, "POST", "/v1/messages", "carol",
		`{"op":"send","ref":"c1","to":"alice","body":{"text":"from http"}}`)
	if status != 200 || ack.Op != "ack" {
		t.Fatalf("POST: %d %+v", status, ack)
	}
	m := alice.expect("msg")
	if m.ID != ack.ID || m.From != "carol" || bodyText(t, m) != "from http" {
		t.Fatalf("alice got %+v", m)
	}

	// HTTP sync returns what sync returns.
	status, page := tn.httpDo(t, "GET", "/v1/messages?after=0", "alice", "")
	if status != 200 || page.Op != "synced" || page.Count != 1 || len(page.Msgs) != 1 ||
		page.Msgs[0].ID != ack.ID || page.Cursor != m.Seq {
		t.Fatalf("GET: %d %+v", status, page)
	}
}

// A service on the NATS port sends with a plain nats.go client, by request
// (answered with an ack) and by fire-and-forget publish.
func TestNATSServiceSendReachesTCP(t *testing.T) {
	tn := startNode(t)
	bob := tn.tcp(t, "bob")
	bob.auth("bob")

	nc, err := nats.Connect(tn.NATSURL())
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	defer nc.Close()

	req := `{"op":"send","from":"billing","ref":"inv-1","to":"bob","body":{"text":"invoice ready"}}`
	reply, err := nc.Request("oc.api.send", []byte(req), 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var ack frame
	if err := json.Unmarshal(reply.Data, &ack); err != nil || ack.Op != "ack" {
		t.Fatalf("reply %s (%v)", reply.Data, err)
	}
	m := bob.expect("msg")
	if m.ID != ack.ID || m.From != "billing" || bodyText(t, m) != "invoice ready" {
		t.Fatalf("bob got %+v", m)
	}

	pub := `{"op":"send","from":"billing","to":"bob","body":{"text":"published"}}`
	if err := nc.Publish("oc.api.send", []byte(pub)); err != nil {
		t.Fatal(err)
	}
	if m := bob.expect("msg"); bodyText(t, m) != "published" {
		t.Fatalf("bob got %+v", m)
	}

	// A service send without a sender is refused with a code.
	reply, err = nc.Request("oc.api.send", []byte(`{"op":"send","to":"bob","body":1}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var e frame
	if err := json.Unmarshal(reply.Data, &e); err != nil || e.Code != "missing_field" {
		t.Fatalf("reply %s", reply.Data)
	}
}

// A message to oneself is stored once and reaches the other connections.
func TestSendToSelf(t *testing.T) {
	tn := startNode(t)
	a1 := tn.tcp(t, "a1")
	a1.auth("alice")
	a2 := tn.ws(t, "a2")
	a2.auth("alice")
	ack := a1.sendTo("alice", "note", text("note to self"))
	if m := a2.expect("msg"); m.ID != ack.ID || m.Seq != ack.Seq {
		t.Fatalf("a2 got %+v, ack %+v", m, ack)
	}
	a1.alive()
	// A sync skips what this connection sent; a new connection gets it.
	a1.send(map[string]any{"op": "sync", "after": 0})
	if s := a1.expect("synced"); s.Count != 0 || s.Cursor != ack.Seq {
		t.Fatalf("synced %+v", s)
	}
	a3 := tn.tcp(t, "a3")
	a3.auth("alice")
	a3.send(map[string]any{"op": "sync", "after": 0})
	if m := a3.expect("msg"); m.ID != ack.ID {
		t.Fatalf("sync got %+v", m)
	}
	if s := a3.expect("synced"); s.Count != 1 {
		t.Fatalf("synced %+v", s)
	}
}

func TestPresenceForServices(t *testing.T) {
	tn := startNode(t)
	tn.tcp(t, "bob-tcp").auth("bob")
	tn.ws(t, "bob-ws").auth("bob")
	nc, err := nats.Connect(tn.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ask := func(q string) map[string]any {
		t.Helper()
		reply, err := nc.Request("oc.api.presence", []byte(q), 5*time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		var v map[string]any
		if err := json.Unmarshal(reply.Data, &v); err != nil {
			t.Fatalf("reply %s", reply.Data)
		}
		return v
	}
	if v := ask(`{"user":"bob"}`); v["online"] != true || len(v["transports"].([]any)) != 2 {
		t.Fatalf("bob: %v", v)
	}
	if v := ask(`{"user":"carol"}`); v["online"] != false {
		t.Fatalf("carol: %v", v)
	}
	if v := ask(`{"user":"a b"}`); v["code"] != "bad_user" {
		t.Fatalf("bad user: %v", v)
	}
}

// Messages of every WebSocket length encoding (7-, 16- and 64-bit) reach
// an independent client intact.
func TestWebSocketFrameSizes(t *testing.T) {
	tn := startNode(t, func(c *node.Config) { c.Session.MaxFrame = 256 << 10 })
	alice := tn.tcp(t, "alice")
	alice.auth("alice")
	bob := tn.ws(t, "bob")
	bob.auth("bob")
	for _, n := range []int{1, 60, 125, 126, 65535 - 120, 65536, 100_000} {
		body := strings.Repeat("x", n)
		alice.sendTo("bob", "size-"+strconv.Itoa(n), body)
		m := bob.expect("msg")
		var got string
		if err := json.Unmarshal(m.Body, &got); err != nil || got != body {
			t.Fatalf("body of %d bytes arrived as %d bytes (%v)", n, len(got), err)
		}
	}
}
