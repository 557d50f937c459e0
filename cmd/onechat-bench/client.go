package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// writeTimeout bounds every write, so a node that stops reading cannot
// block a sender or the pacer forever.
const writeTimeout = 10 * time.Second

type role uint8

const (
	roleNone role = iota // the odd one out when n is odd
	roleSender
	roleRecipient
)

// client is one WebSocket connection, as one user. Its gws read loop
// calls the On* methods on one goroutine.
type client struct {
	b       *bench
	user    string
	partner string // the user it sends to, or receives from
	role    role
	home    int // index of the node it connects to, in bench.nodes

	ws     *gws.Conn
	ready  chan error // gets one value: nil on the ok frame, else why not
	once   sync.Once
	up     atomic.Bool // got ok and not closed: safe to write to
	refSeq atomic.Uint64
	lastT  atomic.Int64 // sender: the latest stamp it sent

	mu   sync.Mutex
	lat  [numPhases][]int64            // recipient: delivery latencies (ns) per phase
	seen [numPhases]map[int64]struct{} // recipient: stamps delivered, per phase
}

func newClient(b *bench, user string) *client {
	return &client{b: b, user: user, ready: make(chan error, 1)}
}

func (c *client) signalReady(err error) {
	c.once.Do(func() { c.ready <- err })
}

// write sends one text frame, bounded by writeTimeout.
func (c *client) write(frame []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(gws.OpcodeText, frame)
}

var pingFrame = []byte(`{"op":"ping"}`)

// ping keeps the connection alive: without it, recipients (which never
// send) would hit the node's idle timeout. ws selects a WebSocket ping
// control frame instead of a ping op.
func (c *client) ping(ws bool) {
	if !c.up.Load() {
		return
	}
	if !ws {
		_ = c.write(pingFrame)
		return
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	_ = c.ws.WritePing(nil)
}

// send sends one message to the partner, stamped tNs (or just after the
// previous stamp, see stamp), as part of p.
func (c *client) send(p *phase, tNs int64) {
	tNs = c.stamp(tNs)
	frame := appendSend(make([]byte, 0, 112), p.letter, c.b.runID, c.refSeq.Add(1), c.partner, tNs)
	// Counted before the write: the ack may be handled on the read
	// goroutine before write returns.
	p.pending.Add(2)
	p.sent.Add(1)
	if err := c.write(frame); err != nil {
		p.sent.Add(-1)
		p.writeErrs.Add(1)
		p.done(2)
	}
}

// stamp returns tNs, or 1 ns after the sender's last stamp if tNs is not
// later. Each message of a sender thus has its own stamp, by which its
// recipient tells a message delivered twice.
func (c *client) stamp(tNs int64) int64 {
	for {
		last := c.lastT.Load()
		t := max(tNs, last+1)
		if c.lastT.CompareAndSwap(last, t) {
			return t
		}
	}
}

// record notes the delivery of the message stamped t, after ns. It
// reports false, and records nothing, if that message came before.
func (c *client) record(phase int, t, ns int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[phase] == nil {
		c.seen[phase] = map[int64]struct{}{}
	}
	if _, dup := c.seen[phase][t]; dup {
		return false
	}
	c.seen[phase][t] = struct{}{}
	c.lat[phase] = append(c.lat[phase], ns)
	return true
}

func (c *client) OnOpen(*gws.Conn) {}

func (c *client) OnClose(_ *gws.Conn, err error) {
	if c.up.Swap(false) {
		c.b.connClosed(c, err)
		return
	}
	c.signalReady(fmt.Errorf("closed before ok: %s", closeReason(err)))
}

func (c *client) OnPing(socket *gws.Conn, payload []byte) { _ = socket.WritePong(payload) }
func (c *client) OnPong(*gws.Conn, []byte)                {}

func (c *client) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	v := parseFrame(m.Bytes())
	switch v.op {
	case "msg":
		c.onMsg(&v)
	case "ack":
		c.b.onAck(c, &v)
	case "pong":
	case "ok":
		c.b.pingMs.CompareAndSwap(0, v.ping)
		c.up.Store(true)
		c.signalReady(nil)
	case "error":
		c.onError(&v)
	default:
		c.b.unexpected.Add(1)
	}
}

// onMsg counts a delivery. Only the recipient's copy counts, from its
// partner; anything else (e.g. a copy on a sender's other connection,
// which this tool never opens) is counted as stray.
func (c *client) onMsg(v *view) {
	now := time.Now().UnixNano()
	if c.role != roleRecipient || string(v.to) != c.user || string(v.from) != c.partner || !v.hasT {
		c.b.stray.Add(1)
		return
	}
	p := c.b.phaseOfT(v.t)
	if p == nil {
		c.b.stray.Add(1)
		return
	}
	if !c.record(p.idx, v.t, now-v.t) {
		p.dupDeliveries.Add(1) // its pending event was taken off the first time
		return
	}
	p.delivered.Add(1)
	p.done(1)
}

func (c *client) onError(v *view) {
	if !c.up.Load() {
		c.signalReady(fmt.Errorf("auth: %s", v.code))
		return
	}
	if p := c.b.phaseOfRef(v.ref); p != nil {
		p.countErr(v.code)
		p.done(2) // neither an ack nor a delivery will come
		return
	}
	c.b.countOtherErr(v.code)
}

// closeReason is a short, stable text for why a connection closed.
func closeReason(err error) string {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d %s", ce.Code, truncate(string(ce.Reason), 40))
	}
	if err == nil {
		return "closed"
	}
	return truncate(err.Error(), 80)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
