package node_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/node"
)

// Bob is offline while Alice sends 100 messages; the node restarts; Bob
// connects and syncs: exactly the 100, in order, once each. A resend with
// a used ref adds nothing.
func TestOfflineMessagesSurviveRestart(t *testing.T) {
	tn := startNode(t)
	alice := tn.ws(t, "alice")
	alice.auth("alice")
	ids := make([]string, 100)
	for i := range ids {
		ack := alice.sendTo("bob", refN("r", i), text(strconv.Itoa(i)))
		ids[i] = ack.ID
	}
	again := alice.sendTo("bob", "r-50", text("50"))
	if again.ID != ids[50] || !again.Dup {
		t.Fatalf("resend: ack %+v, want id %s with dup", again, ids[50])
	}

	tn.restart(t)

	bob := tn.tcp(t, "bob")
	bob.auth("bob")
	bob.send(map[string]any{"op": "sync", "ref": "s1", "after": 0})
	var last uint64
	for i := range ids {
		m := bob.expect("msg")
		if m.ID != ids[i] || bodyText(t, m) != strconv.Itoa(i) || m.Seq <= last {
			t.Fatalf("message %d: got %+v (previous seq %d)", i, m, last)
		}
		last = m.Seq
	}
	done := bob.expect("synced")
	if done.Count != 100 || done.Cursor != last || done.Ref != "s1" || done.Expired {
		t.Fatalf("synced %+v, want count 100 cursor %d", done, last)
	}
	// Nothing after the cursor.
	bob.send(map[string]any{"op": "sync", "after": done.Cursor})
	if s := bob.expect("synced"); s.Count != 0 || s.Cursor != done.Cursor {
		t.Fatalf("second sync %+v", s)
	}

	// The same over HTTP, in two pages.
	status, p1 := tn.httpDo(t, "GET", "/v1/messages?after=0&limit=60", "bob", "")
	if status != 200 || p1.Count != 60 || !p1.More {
		t.Fatalf("page 1: %d count %d more %v", status, p1.Count, p1.More)
	}
	_, p2 := tn.httpDo(t, "GET", fmt.Sprintf("/v1/messages?after=%d&limit=60", p1.Cursor), "bob", "")
	if p2.Count != 40 || p2.More || p2.Msgs[39].ID != ids[99] || p2.Msgs[0].ID != ids[60] {
		t.Fatalf("page 2: count %d more %v", p2.Count, p2.More)
	}
}

// sendNumbered sends bob messages first..last-1, waiting for each ack.
func sendNumbered(c *client, prefix string, first, last int) {
	c.t.Helper()
	for i := first; i < last; i++ {
		c.sendTo("bob", refN(prefix, i), text(strconv.Itoa(i)))
	}
}

// sendConcurrently sends messages first..last-1 from c to bob while the
// test goes on; wait for the acks with the returned function.
func sendConcurrently(c *client, prefix string, first, last int) (waitAcks func()) {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := first; i < last; i++ {
			c.send(map[string]any{"op": "send", "ref": refN(prefix, i), "to": "bob",
				"body": text(strconv.Itoa(i))})
		}
	}()
	return func() {
		<-sent
		for range last - first {
			c.expect("ack")
		}
	}
}

// A client that resumes in its auth frame while messages keep arriving
// sees one ordered sequence: no gap and no duplicate between stored and
// live messages.
func TestResumeInAuthWhileLive(t *testing.T) {
	tn := startNode(t)
	alice := tn.tcp(t, "alice")
	alice.auth("alice")
	sendNumbered(alice, "pre", 0, 50)
	waitAcks := sendConcurrently(alice, "live", 50, 150)

	bob := tn.ws(t, "bob")
	bob.send(map[string]any{"op": "auth", "token": token(t, "bob"), "after": 0})
	bob.expect("ok")
	next, last, synced := 0, uint64(0), false
	for next < 150 {
		f := bob.next()
		if f.Op == "synced" && !synced {
			synced = true
			continue
		}
		if f.Op != "msg" || bodyText(t, f) != strconv.Itoa(next) || f.Seq <= last {
			t.Fatalf("want message %d after seq %d, got %+v", next, last, f)
		}
		next++
		last = f.Seq
	}
	waitAcks()
	if !synced {
		bob.expect("synced")
	}
	bob.alive() // nothing duplicated is queued before the pong
}

// A sync on a connection that already receives live messages sends each
// message once: the ones it already sent live are skipped.
func TestSyncOnLiveConnection(t *testing.T) {
	tn := startNode(t)
	alice := tn.tcp(t, "alice")
	alice.auth("alice")
	sendNumbered(alice, "pre", 0, 50)
	bob := tn.ws(t, "bob")
	bob.auth("bob")
	waitAcks := sendConcurrently(alice, "live", 50, 150)

	bob.send(map[string]any{"op": "sync", "after": 0})
	seen, synced := map[string]bool{}, false
	for len(seen) < 150 {
		var f frame
		select {
		case f = <-bob.frames:
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 150: %v", len(seen), seen)
		}
		if f.Op == "synced" && !synced {
			synced = true
			continue
		}
		if f.Op != "msg" || seen[bodyText(t, f)] {
			t.Fatalf("unexpected or repeated frame %+v", f)
		}
		seen[bodyText(t, f)] = true
	}
	waitAcks()
	if !synced {
		bob.expect("synced")
	}
	bob.alive()
}

// A retry after an attempt that stored only the recipient's copy stores
// the sender's copy once, with the first attempt's id; a further retry
// stores nothing.
func TestRetryAfterPartialSend(t *testing.T) {
	tn := startNode(t)
	nc, err := nats.Connect(tn.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// What a node that died between the two writes leaves behind.
	first := nats.NewMsg("oc.in.bob")
	first.Header.Set("Nats-Msg-Id", "alice/r7")
	first.Data = []byte(`{"op":"msg","id":"06h0000000000000000000000a",` +
		`"from":"alice","to":"bob","ts":5,"body":"x"}`)
	if _, err := nc.RequestMsg(first, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	alice := tn.tcp(t, "alice")
	alice.auth("alice")
	for range 2 {
		ack := alice.sendTo("bob", "r7", "x")
		if ack.ID != "06h0000000000000000000000a" || !ack.Dup || ack.TS != 5 {
			t.Fatalf("retry ack %+v", ack)
		}
	}
	other := tn.tcp(t, "alice-2")
	other.send(map[string]any{"op": "auth", "token": token(t, "alice"), "after": 0})
	other.expect("ok")
	if m := other.expect("msg"); m.ID != "06h0000000000000000000000a" {
		t.Fatalf("sender copy %+v", m)
	}
	if s := other.expect("synced"); s.Count != 1 {
		t.Fatalf("sender's inbox holds %d copies, want 1", s.Count)
	}
}

// Several connections racing to send the same refs store each message
// once in each inbox.
func TestRacingRetriesStoreOnce(t *testing.T) {
	tn := startNode(t, func(c *node.Config) { c.Session.SendRate = -1 })
	const refs, conns = 300, 4
	var wg sync.WaitGroup
	for i := range conns {
		c := tn.tcp(t, "alice-"+strconv.Itoa(i))
		c.auth("alice")
		wg.Go(func() {
			for r := range refs {
				_ = c.write([]byte(`{"op":"send","ref":"k` + strconv.Itoa(r) + `","to":"bob","body":1}`))
			}
			for acks := 0; acks < refs; {
				switch f := <-c.frames; f.Op {
				case "ack":
					acks++
				case "msg": // the copies other connections sent
				default:
					t.Errorf("got %+v", f)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, user := range []string{"alice", "bob"} {
		ids := map[string]int{}
		after := uint64(0)
		for {
			_, page := tn.httpDo(t, "GET", fmt.Sprintf("/v1/messages?after=%d", after), user, "")
			for _, m := range page.Msgs {
				ids[m.ID]++
			}
			after = page.Cursor
			if !page.More {
				break
			}
		}
		total := 0
		for _, n := range ids {
			total += n
		}
		if len(ids) != refs || total != refs {
			t.Errorf("%s's inbox: %d messages with %d ids, want %d once each", user, total, len(ids), refs)
		}
	}
}
