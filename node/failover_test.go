package node_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failoverRun is a sender sending `total` numbered messages to a
// recipient, both roaming between node processes, while the test does
// something to the nodes.
type failoverRun struct {
	t      *testing.T
	total  int
	pace   time.Duration
	sender *roamer
	recv   *roamer

	acked    atomic.Int64
	mu       sync.Mutex
	ackedIDs []string
	got      []frame // in arrival order
	seen     map[string]int
	dups     int
	stop     chan struct{}
	wg       sync.WaitGroup
	sendDone chan struct{}
}

// newFailoverRun starts the sender on sendAt and the recipient on recvAt.
// Both know every node as a seed, after the one they start on.
func newFailoverRun(
	t *testing.T, total int, pace time.Duration, procs []*proc, sendAt, recvAt *proc,
) *failoverRun {
	seeds := func(first *proc) []nodeAddr {
		out := []nodeAddr{first.addr()}
		for _, p := range procs {
			if p != first {
				out = append(out, p.addr())
			}
		}
		return out
	}
	r := &failoverRun{t: t, total: total, pace: pace, seen: map[string]int{},
		stop: make(chan struct{}), sendDone: make(chan struct{}),
		sender: &roamer{t: t, user: "sender", transport: "tcp", seeds: seeds(sendAt)},
		recv:   &roamer{t: t, user: "recipient", transport: "ws", resume: true, seeds: seeds(recvAt)},
	}
	if err := r.recv.connect(); err != nil {
		t.Fatal(err)
	}
	if err := r.sender.connect(); err != nil {
		t.Fatal(err)
	}
	r.wg.Go(r.receive)
	r.wg.Go(r.send)
	return r
}

// receive records every msg frame and reconnects when the node goes.
func (r *failoverRun) receive() {
	for {
		c := r.recv.c
		select {
		case <-r.stop:
			return
		case f := <-c.frames:
			if f.Op != "msg" {
				continue // ok, synced, or the shutting_down notice
			}
			r.mu.Lock()
			if _, dup := r.seen[f.ID]; dup {
				r.dups++
			} else {
				r.seen[f.ID] = len(r.got)
				r.got = append(r.got, f)
			}
			r.recv.cursor = max(r.recv.cursor, f.Seq)
			r.mu.Unlock()
		case <-c.done:
			if err := r.recv.connect(); err != nil {
				r.t.Error(err)
				return
			}
		}
	}
}

// send sends message k until it is acked, reconnecting and retrying with
// the same ref as a client must.
func (r *failoverRun) send() {
	defer close(r.sendDone)
	tick := time.NewTicker(r.pace)
	defer tick.Stop()
	for k := range r.total {
		select {
		case <-tick.C:
		case <-r.stop:
			return
		}
		req := mustJSON(map[string]any{"op": "send", "ref": "k" + strconv.Itoa(k), "to": "recipient",
			"body": map[string]string{"text": strconv.Itoa(k)}})
		for acked := false; !acked; {
			select {
			case <-r.stop:
				return
			default:
			}
			acked = r.sendOnce(req, "k"+strconv.Itoa(k))
		}
	}
}

func (r *failoverRun) sendOnce(req []byte, ref string) bool {
	c := r.sender.c
	if c.write(req) != nil {
		r.reconnectSender()
		return false
	}
	timeout := time.After(8 * time.Second)
	for {
		select {
		case f := <-c.frames:
			switch {
			case f.Op == "ack" && f.Ref == ref:
				r.mu.Lock()
				r.ackedIDs = append(r.ackedIDs, f.ID)
				r.mu.Unlock()
				r.acked.Add(1)
				return true
			case f.Op == "error" && f.Ref == ref:
				if f.Code != "unavailable" && f.Code != "shutting_down" {
					r.t.Errorf("send %s: %s: %s", ref, f.Code, f.Error)
					close(r.stop)
				}
				time.Sleep(100 * time.Millisecond)
				return false
			}
		case <-c.done:
			r.reconnectSender()
			return false
		case <-timeout:
			return false // retry with the same ref
		}
	}
}

func (r *failoverRun) reconnectSender() {
	if err := r.sender.connect(); err != nil {
		r.t.Error(err)
	}
}

// waitAcked waits until n messages are acked.
func (r *failoverRun) waitAcked(n int) {
	r.t.Helper()
	waitFor(r.t, 2*time.Minute, func() (int64, bool) { return r.acked.Load(), r.acked.Load() >= int64(n) })
}

// finish waits for the sender and for the recipient to hold every
// message, then checks: exactly total messages, each once, in order, and
// every acked one among them.
func (r *failoverRun) finish() {
	r.t.Helper()
	select {
	case <-r.sendDone:
		r.mu.Lock()
		r.t.Logf("sender done at %s; recipient has %d, cursor %d", time.Now().Format("15:04:05.000"),
			len(r.got), r.recv.cursor)
		r.mu.Unlock()
	case <-time.After(3 * time.Minute):
		r.t.Fatalf("sender not done after 3 minutes; %d acked", r.acked.Load())
	}
	// Live delivery or a reconnect's sync brings the rest within seconds;
	// the idle timeout (60 s) must not be what ends a stall.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.got)
		r.mu.Unlock()
		if n >= r.total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Logf("recipient complete at %s", time.Now().Format("15:04:05.000"))
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dups != 0 {
		r.t.Errorf("%d messages delivered twice", r.dups)
	}
	for i, f := range r.got {
		var b struct{ Text string }
		_ = json.Unmarshal(f.Body, &b)
		if b.Text != strconv.Itoa(i) {
			r.t.Fatalf("message %d of %d is %q (seq %d): order broken or messages missing",
				i, len(r.got), b.Text, f.Seq)
		}
	}
	if len(r.got) != r.total {
		r.t.Fatalf("recipient has %d messages, want %d", len(r.got), r.total)
	}
	for _, id := range r.ackedIDs {
		if _, ok := r.seen[id]; !ok {
			r.t.Fatalf("acked message %s never reached the recipient", id)
		}
	}
}

// The node holding the recipient, which also leads the inbox stream,
// hangs in the middle of 1,000 messages (SIGSTOP: its sockets stay open)
// and is then killed -9. A user idle on it shows offline within the
// documented 15 s of the hang, a node-down event is published, the
// recipient moves to another node and ends with exactly the 1,000, in
// order, and the idle user is not online again when the node comes back.
func TestFailoverKill(t *testing.T) {
	procs := startProcs(t, 3)
	victim, other := leaderAndOther(t, procs)
	watch := natsClient(t, "nats://"+other.nats)
	nodeEvents, err := watch.SubscribeSync("oc.presence.node." + victim.name)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := tryDialTCP(t, victim.tcp, "idle")
	if err != nil {
		t.Fatal(err)
	}
	idle.send(map[string]string{"op": "auth", "token": token(t, "idle")})
	idle.expect("ok")
	// online asks for idle's presence. A request in flight to the node
	// being killed goes unanswered, and a client asks again.
	online := func() (online, answered bool) {
		m, err := watch.Request("oc.api.presence", []byte(`{"user":"idle"}`), time.Second)
		if err != nil {
			t.Logf("presence: %v", err)
			return false, false
		}
		var st presenceStatus
		_ = json.Unmarshal(m.Data, &st)
		return st.Online, true
	}
	waitFor(t, 5*time.Second, func() (bool, bool) {
		on, ok := online()
		return on, ok && on
	})

	run := newFailoverRun(t, 1000, 10*time.Millisecond, procs, other, victim)
	run.waitAcked(300)
	victim.freeze()
	hung := time.Now()
	waitFor(t, 15*time.Second, func() (bool, bool) {
		on, ok := online()
		return on, ok && !on
	})
	t.Logf("idle user offline %v after the hang", time.Since(hung).Round(time.Millisecond))
	m, err := nodeEvents.NextMsg(15*time.Second - time.Since(hung))
	if err != nil {
		t.Fatalf("no node-down event within 15s: %v", err)
	}
	t.Logf("node-down event %v after the hang", time.Since(hung).Round(time.Millisecond))
	victim.kill()
	var ev struct {
		Online bool
		Reason string
	}
	if _ = json.Unmarshal(m.Data, &ev); ev.Online || ev.Reason != "lost" {
		t.Fatalf("node event %s", m.Data)
	}

	run.finish()
	victim.start()
	if on := waitFor(t, 5*time.Second, func() (bool, bool) { return online() }); on {
		t.Fatal("idle user online again after its node came back")
	}
}

// A rolling restart of all three nodes, each drained with SIGTERM, while
// 1,000 messages flow: the same guarantees as a crash.
func TestFailoverRollingRestart(t *testing.T) {
	t.Parallel()
	procs := startProcs(t, 3)
	if t.Failed() {
		t.FailNow()
	}
	run := newFailoverRun(t, 1000, 10*time.Millisecond, procs, procs[1], procs[0])
	for i, p := range procs {
		run.waitAcked(150 * (i + 1))
		start := time.Now()
		p.term()
		t.Logf("%s drained and stopped in %v", p.name, time.Since(start).Round(time.Millisecond))
		p.start()
	}
	run.finish()
}

// proc.cont resumes a frozen process.
func (p *proc) cont() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		p.t.Errorf("%s: SIGCONT: %v", p.name, err)
	}
}

// A node that hangs and comes back, its clients still connected, delivers
// the messages stored for them meanwhile without waiting for another
// message to reveal the gap; its users are announced online again.
func TestFrozenNodeCatchesUp(t *testing.T) {
	t.Parallel()
	procs := startProcs(t, 3)
	frozen, other := leaderAndOther(t, procs)
	user := dialTCP(t, frozen.tcp, "sleeper")
	user.auth("sleeper")
	events, err := natsClient(t, "nats://"+other.nats).SubscribeSync("oc.presence.user.sleeper")
	if err != nil {
		t.Fatal(err)
	}
	sender := dialTCP(t, other.tcp, "sender")
	sender.auth("sender")

	frozen.freeze()
	var ids []string
	for i := range 2 {
		// Acked once the others have elected a new leader.
		for {
			sender.send(map[string]any{"op": "send", "ref": refN("f", i), "to": "sleeper", "body": text("x")})
			f := sender.next()
			if f.Op == "ack" {
				ids = append(ids, f.ID)
				break
			}
			if f.Code != "unavailable" {
				t.Fatalf("send: %+v", f)
			}
		}
	}
	time.Sleep(9 * time.Second) // past the peers' expiry: they report the node lost
	frozen.cont()
	for _, id := range ids {
		if m := user.expect("msg"); m.ID != id {
			t.Fatalf("got %+v, want %s", m, id)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := events.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no online event for the user after the node came back: %v", err)
		}
		var ev struct{ Online bool }
		if json.Unmarshal(m.Data, &ev) == nil && ev.Online {
			break
		}
	}
}

// leaderAndOther returns the node leading the inbox stream and another.
func leaderAndOther(t *testing.T, procs []*proc) (leader, other *proc) {
	t.Helper()
	if t.Failed() {
		t.FailNow() // a node did not start
	}
	name := streamLeader(t, natsClient(t, "nats://"+procs[0].nats))
	for _, p := range procs {
		if p.name == name {
			leader = p
		} else if other == nil {
			other = p
		}
	}
	if leader == nil {
		t.Fatalf("stream leader %q is none of the nodes", name)
	}
	return leader, other
}
