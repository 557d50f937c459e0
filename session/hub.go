package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/metrics"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/storage"
)

// Config holds the limits and timings of sessions. Zero values take the
// defaults noted on each field (see ApplyDefaults).
type Config struct {
	MaxFrame        int           // largest client frame in bytes; 64 KiB
	PingInterval    time.Duration // how often clients should ping; 25s
	IdleTimeout     time.Duration // silence before a connection is closed; 60s
	AuthTimeout     time.Duration // time allowed to authenticate; 10s
	WriteTimeout    time.Duration // longest a write to a client may block; 10s
	StoreTimeout    time.Duration // longest a store operation may take; 5s
	OutboxFrames    int           // frames queued per connection; 512
	OutboxBytes     int           // bytes queued per connection; 1 MiB or 4 frames
	MaxConnsPerUser int           // connections per user on one node; 32
	SendRate        float64       // sends per second per connection; 100 (negative: no limit)
	SendBurst       int           // burst above SendRate; 200
	SyncPageLimit   int           // most messages per HTTP sync page; 1000
	MaxBackfill     int           // most messages read to fill a live gap; 1000
}

// ApplyDefaults fills zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&c.MaxFrame, 64<<10)
	def(&c.PingInterval, 25*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.StoreTimeout, 5*time.Second)
	defInt(&c.OutboxFrames, 512)
	defInt(&c.OutboxBytes, max(1<<20, 4*c.MaxFrame))
	defInt(&c.MaxConnsPerUser, 32)
	if c.SendRate == 0 {
		c.SendRate = 100
	}
	defInt(&c.SendBurst, 200)
	defInt(&c.SyncPageLimit, 1000)
	defInt(&c.MaxBackfill, 1000)
}

// Validate reports every problem with c, in words a user can act on.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxFrame < 1024 {
		errs = append(errs, fmt.Errorf("max frame %d is below 1024 bytes", c.MaxFrame))
	}
	if c.PingInterval >= c.IdleTimeout {
		errs = append(errs, fmt.Errorf("ping interval %s must be shorter than idle timeout %s",
			c.PingInterval, c.IdleTimeout))
	}
	if c.OutboxBytes < c.MaxFrame {
		errs = append(errs, fmt.Errorf("outbox bytes %d must hold at least one frame of %d",
			c.OutboxBytes, c.MaxFrame))
	}
	return errors.Join(errs...)
}

// Hub is the chat core of one node: its sessions, its online users and
// the path of every message from send to store to delivery.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	node   string // ID
	name   string
	verify *auth.Verifier
	inbox  *storage.Inbox
	live   *bus.Live
	peers  Cluster
	m      *metrics.Chat

	users    userTable
	sessions sessionSet
	refs     refGate // one send at a time per ref; see Send
	nextID   atomic.Uint64
	closing  atomic.Bool
	open     sync.WaitGroup // one per session from Open to its end
	warn     rateLimitedLog
	now      func() time.Time
}

// HubDeps are what a Hub is built from.
type HubDeps struct {
	Config   Config
	Log      *slog.Logger
	NodeID   string // unique per node; prefixes session IDs
	NodeName string // the node's name, told to clients
	Verifier *auth.Verifier
	Inbox    *storage.Inbox
	Cluster  Cluster       // nil on a node without peers to coordinate with
	Metrics  *metrics.Chat // nil: not measured
}

// Cluster is what the hub needs from the node's place in a cluster.
type Cluster interface {
	// Barrier returns once messages stored from now on will be
	// republished to every subscription this node has made so far.
	Barrier(ctx context.Context) error
	// Nodes lists the nodes clients may connect to.
	Nodes() []protocol.NodeAddr
	// UserOnline is told when a user's first session on this node
	// starts (true) and their last one ends (false).
	UserOnline(user string, online bool)
}

type soloCluster struct{}

func (soloCluster) Barrier(context.Context) error { return nil }
func (soloCluster) Nodes() []protocol.NodeAddr    { return nil }
func (soloCluster) UserOnline(string, bool)       {}

// NewHub returns a Hub. Attach a live subscription set with SetLive
// before accepting sessions.
func NewHub(d HubDeps) *Hub {
	d.Config.ApplyDefaults()
	h := &Hub{
		cfg:    d.Config,
		log:    d.Log,
		node:   d.NodeID,
		name:   d.NodeName,
		verify: d.Verifier,
		inbox:  d.Inbox,
		peers:  d.Cluster,
		m:      d.Metrics,
		now:    time.Now,
	}
	if h.peers == nil {
		h.peers = soloCluster{}
	}
	// Session IDs name the sender of a message on its stored copy, so
	// they must not repeat after a restart: counting starts from the
	// time, in microseconds.
	h.nextID.Store(uint64(time.Now().UnixMicro()))
	h.users.init()
	h.sessions.init()
	h.refs.init()
	h.warn.log = d.Log
	return h
}

// SetLive attaches the node's live subscriptions; its handler must call
// h.DeliverLive.
func (h *Hub) SetLive(l *bus.Live) { h.live = l }

// Config returns the effective configuration.
func (h *Hub) Config() Config { return h.cfg }

// Run sweeps sessions for idle, unauthenticated and expired connections
// until ctx is done.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep(h.now())
		}
	}
}

// Shutdown closes every session with the reason shutting_down after its
// in-flight frame has been handled and its queue written, and waits for
// them to end or ctx to be done, whichever is first.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	h.sessions.each(func(s *Session) {
		go s.Shutdown(protocol.CodeShuttingDown, shutdownText)
	})
	done := make(chan struct{})
	go func() {
		h.open.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.sessions.each(func(s *Session) { s.conn.Close(protocol.CodeShuttingDown, shutdownText) })
		return fmt.Errorf("session: shutdown: %w", ctx.Err())
	}
}

// Open starts a session on conn. The transport must call Session.Closed
// once the connection has ended, whatever the cause.
func (h *Hub) Open(conn Conn) *Session {
	s := newSession(h, conn)
	h.m.ConnOpened(conn.Transport())
	h.open.Add(1)
	h.sessions.add(s)
	if h.closing.Load() {
		go s.Shutdown(protocol.CodeShuttingDown, shutdownText)
	}
	return s
}

const shutdownText = "the node is shutting down; reconnect"

// sessionID names session number seq, unique across nodes.
func (h *Hub) sessionID(seq uint64) string {
	var b strings.Builder
	b.WriteString(h.node)
	b.WriteByte('-')
	b.WriteString(fmtBase36(seq))
	return b.String()
}

// sessionSet is every open session, sharded to keep Open and Closed from
// contending on one lock.
type sessionSet struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[*Session]struct{}
	}
}

func (ss *sessionSet) init() {
	for i := range ss.shards {
		ss.shards[i].m = make(map[*Session]struct{})
	}
}

func (ss *sessionSet) shard(s *Session) int { return int(s.seq % uint64(len(ss.shards))) }

func (ss *sessionSet) add(s *Session) {
	sh := &ss.shards[ss.shard(s)]
	sh.mu.Lock()
	sh.m[s] = struct{}{}
	sh.mu.Unlock()
}

func (ss *sessionSet) remove(s *Session) {
	sh := &ss.shards[ss.shard(s)]
	sh.mu.Lock()
	delete(sh.m, s)
	sh.mu.Unlock()
}

// each calls fn for every session, never under a lock fn could need.
func (ss *sessionSet) each(fn func(*Session)) {
	var batch []*Session
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		for s := range sh.m {
			batch = append(batch, s)
		}
		sh.mu.Unlock()
		for _, s := range batch {
			fn(s)
		}
		batch = batch[:0]
	}
}

// rateLimitedLog logs a warning at most once per key and interval.
type rateLimitedLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLimitedLog) warn(key, msg string, args ...any) {
	r.mu.Lock()
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	now := time.Now()
	if now.Sub(r.last[key]) < 10*time.Second {
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn(msg, args...)
}

const base36 = "0123456789abcdefghijklmnopqrstuvwxyz"

func fmtBase36(n uint64) string {
	var buf [13]byte
	i := len(buf)
	for {
		i--
		buf[i] = base36[n%36]
		n /= 36
		if n == 0 {
			return string(buf[i:])
		}
	}
}
