package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
	"github.com/onechat/onechat/storage"
)

// Membership timing. A node that has sent no heartbeat for peerExpiry is
// reported down (on oc.presence.node.*) and dropped from the node list
// clients get.
const (
	beatEvery    = 2 * time.Second
	peerExpiry   = 8 * time.Second
	leaderEvery  = 10 * time.Second
	catchUpDelay = 500 * time.Millisecond
)

// cluster is the node's view of its peers: who is up and where clients
// reach them, which node leads the inbox stream, and the presence events
// that follow from both. It implements session.Cluster.
type cluster struct {
	name   string
	nc     *nats.Conn
	inbox  *storage.Inbox
	log    *slog.Logger
	routes func() int                  // route connections of the embedded server
	hub    atomic.Pointer[session.Hub] // set once the hub exists

	self    atomic.Pointer[protocol.NodeAddr]
	leader  atomic.Pointer[string]
	leaving atomic.Bool

	mu    sync.Mutex
	peers map[string]peer

	subs []*nats.Subscription
	kick chan struct{} // asks for a catch-up; holds at most one request
}

type peer struct {
	addr protocol.NodeAddr
	seen time.Time
}

// beat is a heartbeat on bus.NodeBeatSubject.
type beat struct {
	protocol.NodeAddr
	State string `json:"state"` // "up", or "leaving" once, when draining
}

// presenceEvent is published on oc.presence.user.* and oc.presence.node.*.
type presenceEvent struct {
	User   string `json:"user,omitempty"`
	Node   string `json:"node"`
	Online bool   `json:"online"`
	Reason string `json:"reason,omitempty"` // node events: "drain" or "lost"
	TS     int64  `json:"ts"`               // unix ms
}

var _ session.Cluster = (*cluster)(nil)

func newCluster(
	name string, nc *nats.Conn, inbox *storage.Inbox, routes func() int, log *slog.Logger,
) *cluster {
	c := &cluster{name: name, nc: nc, inbox: inbox, routes: routes, log: log, peers: map[string]peer{},
		kick: make(chan struct{}, 1)}
	c.self.Store(&protocol.NodeAddr{Name: name})
	empty := ""
	c.leader.Store(&empty)
	return c
}

// start subscribes to the cluster's subjects and learns the stream leader.
func (c *cluster) start(ctx context.Context) error {
	for _, s := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{bus.BarrierSubject(c.name), func(m *nats.Msg) { _ = m.Respond(nil) }},
		{bus.NodeBeatSubject, c.onBeat},
		{server.JSAdvisoryStreamLeaderElectedPre + "." + storage.StreamName, c.onLeader},
	} {
		sub, err := c.nc.Subscribe(s.subject, s.handle)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", s.subject, err)
		}
		c.subs = append(c.subs, sub)
	}
	c.refreshLeader(ctx)
	return nil
}

// run sends heartbeats, expires silent peers and watches for what calls
// for a catch-up, until ctx ends.
func (c *cluster) run(ctx context.Context) {
	go c.catchUps(ctx)
	c.announce(false)
	c.sendBeat("up")
	beats := time.NewTicker(beatEvery)
	defer beats.Stop()
	leader := time.NewTicker(leaderEvery)
	defer leader.Stop()
	lastBeat := time.Now()
	routes, routesLow := c.routes(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-beats.C:
			if !c.leaving.Load() {
				c.sendBeat("up")
			}
			c.expire(now)
			// A node that was paused (a stopped process, a suspended
			// VM) or cut off had no live subscriptions anywhere for a
			// while: messages stored meanwhile were republished to
			// nobody here, and peers may have reported it lost.
			if gap := now.Sub(lastBeat); gap > 3*beatEvery {
				c.log.Warn("node was paused; catching up", "for", gap.Round(time.Second))
				c.catchUp()
				if gap > peerExpiry {
					c.announce(true)
				}
			}
			lastBeat = now
			switch r := c.routes(); {
			case r < routes && routesLow.IsZero():
				routesLow = now
			case r > routes:
				c.log.Info("routes back; catching up", "routes", r)
				c.catchUp()
				if !routesLow.IsZero() && now.Sub(routesLow) > peerExpiry {
					c.announce(true)
				}
				routesLow = time.Time{}
				routes = r
			default:
				routes = r
			}
		case <-leader.C:
			c.refreshLeader(ctx)
		}
	}
}

// announce publishes this node's online event, and with users, an online
// event for each of its users: peers may have reported them gone.
func (c *cluster) announce(users bool) {
	c.publish(bus.NodePresencePrefix+bus.Token(c.name), presenceEvent{Node: c.name, Online: true})
	if hub := c.hub.Load(); users && hub != nil {
		hub.EachUser(func(user string) { c.UserOnline(user, true) })
	}
}

// catchUp asks for every online user to be checked against the store.
// Requests made while one runs are folded into one more run.
func (c *cluster) catchUp() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *cluster) catchUps(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		// Let an election or a route settle before reading the store.
		select {
		case <-ctx.Done():
			return
		case <-time.After(catchUpDelay):
		}
		if hub := c.hub.Load(); hub != nil {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			hub.CatchUp(cctx)
			cancel()
		}
	}
}

// leave tells the peers this node is going: they drop it from the node
// list at once instead of after peerExpiry.
func (c *cluster) leave() {
	if c.leaving.Swap(true) {
		return
	}
	c.sendBeat("leaving")
	c.publish(bus.NodePresencePrefix+bus.Token(c.name),
		presenceEvent{Node: c.name, Online: false, Reason: "drain"})
	_ = c.nc.Flush()
}

func (c *cluster) stop() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

func (c *cluster) sendBeat(state string) {
	b, _ := json.Marshal(beat{NodeAddr: *c.self.Load(), State: state})
	if err := c.nc.Publish(bus.NodeBeatSubject, b); err != nil {
		c.log.Debug("heartbeat not sent", "err", err)
	}
}

func (c *cluster) onBeat(m *nats.Msg) {
	var b beat
	if json.Unmarshal(m.Data, &b) != nil || b.Name == "" || b.Name == c.name {
		return
	}
	c.mu.Lock()
	if b.State == "leaving" {
		delete(c.peers, b.Name)
		c.mu.Unlock()
		return
	}
	_, known := c.peers[b.Name]
	c.peers[b.Name] = peer{addr: b.NodeAddr, seen: time.Now()}
	c.mu.Unlock()
	if !known {
		c.log.Info("node joined", "peer", b.Name)
		// A newcomer learns of this node now rather than at its next
		// beat, so the node list it hands out is complete sooner.
		if !c.leaving.Load() {
			c.sendBeat("up")
		}
	}
}

// expire drops peers silent for peerExpiry. Of the nodes left, the one
// first by name reports each loss, so one event is published per loss.
func (c *cluster) expire(now time.Time) {
	c.mu.Lock()
	var lost []string
	for name, p := range c.peers {
		if now.Sub(p.seen) > peerExpiry {
			lost = append(lost, name)
			delete(c.peers, name)
		}
	}
	reporter := true
	for name := range c.peers {
		if name < c.name {
			reporter = false
		}
	}
	c.mu.Unlock()
	for _, name := range lost {
		c.log.Warn("node lost: no heartbeat", "peer", name, "for", peerExpiry)
		if reporter {
			c.publish(bus.NodePresencePrefix+bus.Token(name),
				presenceEvent{Node: name, Online: false, Reason: "lost"})
		}
	}
}

func (c *cluster) publish(subject string, ev presenceEvent) {
	ev.TS = time.Now().UnixMilli()
	b, _ := json.Marshal(ev)
	if err := c.nc.Publish(subject, b); err != nil {
		c.log.Debug("presence event not sent", "subject", subject, "err", err)
	}
}

// onLeader follows the inbox stream's leader. A new leader may have taken
// over messages its predecessor stored but never republished, so every
// online user is checked against the store once the dust settles.
func (c *cluster) onLeader(m *nats.Msg) {
	var adv server.JSStreamLeaderElectedAdvisory
	if json.Unmarshal(m.Data, &adv) != nil || adv.Leader == "" {
		return
	}
	c.leader.Store(&adv.Leader)
	c.log.Info("inbox stream has a new leader", "leader", adv.Leader)
	c.catchUp()
}

func (c *cluster) refreshLeader(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l, err := c.inbox.Leader(ctx)
	if err != nil || l == "" {
		c.log.Debug("stream leader unknown", "err", err)
		return
	}
	// A change the advisory did not bring (it was missed while the node
	// was cut off) calls for a catch-up all the same.
	if old := c.leader.Swap(&l); *old != "" && *old != l {
		c.log.Info("inbox stream leader changed", "leader", l)
		c.catchUp()
	}
}

// Barrier makes a round trip to the stream's leader. The request follows
// this node's earlier subscriptions on the same route connection, so once
// it is answered the leader republishes to them.
func (c *cluster) Barrier(ctx context.Context) error {
	leader := *c.leader.Load()
	if leader == "" || leader == c.name {
		return nil // the local server saw the subscription already
	}
	if _, err := c.nc.RequestWithContext(ctx, bus.BarrierSubject(leader), nil); err != nil {
		return fmt.Errorf("cluster: barrier via %s: %w", leader, err)
	}
	return nil
}

// Nodes lists this node and the peers heard from, by name.
func (c *cluster) Nodes() []protocol.NodeAddr {
	out := []protocol.NodeAddr{*c.self.Load()}
	c.mu.Lock()
	for _, p := range c.peers {
		out = append(out, p.addr)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b protocol.NodeAddr) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// UserOnline publishes a user presence event.
func (c *cluster) UserOnline(user string, online bool) {
	c.publish(bus.UserPresencePrefix+bus.Token(user),
		presenceEvent{User: user, Node: c.name, Online: online})
}
