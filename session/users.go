package session

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/protocol"
)

// userState is one online user on this node: the live subscription their
// sessions share and the delivery position of that subscription.
type userState struct {
	user  string
	token string // bus.Token(user), the key in the user table

	mu       sync.Mutex // guards sub, dead and writes to sessions
	sub      *nats.Subscription
	dead     bool                       // removed from the table; do not use
	sessions atomic.Pointer[[]*Session] // copy on write; read without mu

	// lastSeq is the sequence of the last live message handled for this
	// user; known says it is set. Only the user's bus shard goroutine
	// uses them. Before the first live message, lastSeq starts from base.
	lastSeq uint64
	known   bool
	// base is the last sequence in the user's inbox just after the
	// subscription was made, or -1 until read.
	base atomic.Int64
}

// userTable maps subject tokens to online users.
type userTable struct {
	seed   maphash.Seed
	shards [64]userShard
}

type userShard struct {
	mu sync.RWMutex
	m  map[string]*userState
}

func (t *userTable) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = make(map[string]*userState)
	}
}

func (t *userTable) shard(token string) *userShard {
	return &t.shards[maphash.String(t.seed, token)%uint64(len(t.shards))]
}

func (t *userTable) get(token string) *userState {
	sh := t.shard(token)
	sh.mu.RLock()
	us := sh.m[token]
	sh.mu.RUnlock()
	return us
}

func (t *userTable) getOrCreate(user, token string) *userState {
	sh := t.shard(token)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	us := sh.m[token]
	if us == nil {
		us = &userState{user: user, token: token}
		us.base.Store(-1)
		sh.m[token] = us
	}
	return us
}

func (t *userTable) removeIf(us *userState) {
	sh := t.shard(us.token)
	sh.mu.Lock()
	if sh.m[us.token] == us {
		delete(sh.m, us.token)
	}
	sh.mu.Unlock()
}

// register adds s to its user's sessions, subscribing the user if s is
// their first session on the node. first is queued to s before s can
// receive any live message, so a client sees its ok frame first.
func (h *Hub) register(ctx context.Context, s *Session, first []byte) *protocol.Error {
	token := bus.Token(s.user)
	for {
		us := h.users.getOrCreate(s.user, token)
		us.mu.Lock()
		if us.dead {
			us.mu.Unlock()
			continue
		}
		perr := h.registerLocked(ctx, us, s, first)
		us.mu.Unlock()
		return perr
	}
}

func (h *Hub) registerLocked(ctx context.Context, us *userState, s *Session, first []byte) *protocol.Error {
	var cur []*Session
	if p := us.sessions.Load(); p != nil {
		cur = *p
	}
	if len(cur) >= h.cfg.MaxConnsPerUser {
		return protocol.Errorf(protocol.CodeTooManyConns,
			"user has %d connections on this node; the limit is %d", len(cur), h.cfg.MaxConnsPerUser)
	}
	subscribe := us.sub == nil
	if subscribe {
		sub, err := h.live.Subscribe(ctx, s.user)
		if err != nil {
			us.dead = true
			h.users.removeIf(us)
			h.log.Error("live subscribe failed", "user", s.user, "err", err)
			return protocol.Errorf(protocol.CodeUnavailable, "could not subscribe; retry")
		}
		us.sub = sub
		if err := h.peers.Barrier(ctx); err != nil {
			// The subscription is made; at worst the first message is
			// found by gap detection.
			h.log.Debug("cluster barrier failed", "user", s.user, "err", err)
		}
		h.readBase(ctx, us)
		h.peers.UserOnline(s.user, true)
	}
	next := make([]*Session, len(cur), len(cur)+1)
	copy(next, cur)
	next = append(next, s)
	// Under s.mu, a live message for s waits until first is queued, while
	// the session is already visible to presence queries.
	s.mu.Lock()
	us.sessions.Store(&next)
	queued := first == nil || s.out.push(first)
	if !queued {
		us.sessions.Store(&cur)
	}
	s.mu.Unlock()
	if !queued {
		if len(cur) == 0 {
			us.dead = true
			h.users.removeIf(us)
			_ = us.sub.Unsubscribe()
		}
		return protocol.Errorf(protocol.CodeSlowConsumer, "connection is not reading")
	}
	s.us = us
	h.m.SessionAdded(subscribe)
	return nil
}

// unregister removes s from its user's sessions and drops the user's
// subscription when s was the last.
func (h *Hub) unregister(s *Session) {
	us := s.us
	if us == nil {
		return
	}
	us.mu.Lock()
	defer us.mu.Unlock()
	cur := *us.sessions.Load()
	next := make([]*Session, 0, len(cur))
	for _, o := range cur {
		if o != s {
			next = append(next, o)
		}
	}
	us.sessions.Store(&next)
	h.m.SessionRemoved(len(next) == 0)
	if len(next) > 0 {
		return
	}
	us.dead = true
	h.users.removeIf(us)
	if err := us.sub.Unsubscribe(); err != nil && err != nats.ErrConnectionClosed {
		h.log.Warn("live unsubscribe failed", "user", us.user, "err", err)
	}
	h.peers.UserOnline(us.user, false)
}

// readBase records the last sequence in us's inbox, so that a first live
// message that follows a lost one is recognised as a gap.
func (h *Hub) readBase(ctx context.Context, us *userState) {
	last, err := h.inbox.Last(ctx, us.user)
	if err != nil {
		h.log.Debug("reading the inbox's last sequence failed", "user", us.user, "err", err)
		return
	}
	us.base.Store(int64(last))
}

// each calls fn for every online user on the node.
func (t *userTable) each(fn func(*userState)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		list := make([]*userState, 0, len(sh.m))
		for _, us := range sh.m {
			list = append(list, us)
		}
		sh.mu.RUnlock()
		for _, us := range list {
			fn(us)
		}
	}
}

// Device is one of a user's connections.
type Device struct {
	Session   string `json:"session"`
	Transport string `json:"transport"`
}

// Online returns user's connections on this node.
func (h *Hub) Online(user string) []Device {
	us := h.users.get(bus.Token(user))
	if us == nil {
		return nil
	}
	p := us.sessions.Load()
	if p == nil {
		return nil
	}
	out := make([]Device, 0, len(*p))
	for _, s := range *p {
		out = append(out, Device{Session: s.id, Transport: s.conn.Transport()})
	}
	return out
}
