package session

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/storage"
)

// DeliverLive hands a message republished by the inbox stream to the
// recipient's sessions on this node. It is the bus.Live handler and runs on
// the recipient's shard goroutine, so one user's messages arrive in order.
//
// RePublish is at most once: a message dropped on the way (a full shard
// channel, a lost route) shows up as a Nats-Last-Sequence newer than the
// last one handled, and the missing messages are read from the store
// before this one is delivered.
func (h *Hub) DeliverLive(m *nats.Msg) {
	token, ok := strings.CutPrefix(m.Subject, bus.LivePrefix)
	if !ok {
		return
	}
	us := h.users.get(token)
	if us == nil {
		return // the user went offline; the message waits in the store
	}
	if !us.known {
		if b := us.base.Load(); b >= 0 {
			us.lastSeq, us.known = uint64(b), true
		}
	}
	if check := m.Header.Get(bus.HeaderCheck); check != "" {
		if us.known {
			h.checkStore(us, check)
		}
		return
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		h.warn.warn("live-header", "live message without a sequence", "subject", m.Subject)
		return
	}
	prev, _ := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
	if seq <= us.lastSeq {
		return // already handled, by a backfill
	}
	if us.known && prev > us.lastSeq {
		if !h.backfill(us, prev) {
			return
		}
	}
	us.lastSeq, us.known = seq, true
	var stored time.Time // for the delivery latency metric only
	if h.m != nil {
		stored, _ = time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	}
	h.fanOut(us, seq, m.Data, m.Header.Get(bus.HeaderOrigin), stored)
}

// fanOut builds the msg frame once and offers it to each session. stored
// is when the store took the message, for the delivery latency; zero when
// unknown.
func (h *Hub) fanOut(us *userState, seq uint64, envelope []byte, origin string, stored time.Time) {
	frame, err := protocol.MsgFrame(envelope, seq)
	if err != nil {
		h.warn.warn("live-envelope", "stored message is not an onechat envelope; skipped",
			"user", us.user, "seq", seq)
		return
	}
	p := us.sessions.Load()
	if p == nil {
		return
	}
	for _, s := range *p {
		s.deliver(seq, frame, origin)
	}
	h.m.Delivered(len(*p), stored)
}

// backfill delivers the stored messages of us after us.lastSeq up to and
// including upTo. It reports false when it could not, after closing the
// user's sessions so that their clients reconnect and sync.
func (h *Hub) backfill(us *userState, upTo uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	for n := 0; us.lastSeq < upTo; n++ {
		if n >= h.cfg.MaxBackfill {
			h.dropUser(us, "live gap larger than the backfill limit")
			return false
		}
		st, err := h.inbox.Next(ctx, us.user, us.lastSeq+1)
		if err == storage.ErrEnd || (err == nil && st.Seq > upTo) {
			// Expired or deleted meanwhile: nothing to deliver.
			h.warn.warn("live-gap-missing", "messages of a live gap are not in the store; skipped",
				"user", us.user, "after", us.lastSeq, "upTo", upTo, "next", st.Seq, "err", err)
			us.lastSeq = upTo
			break
		}
		if err != nil {
			h.log.Error("live backfill failed", "user", us.user, "err", err)
			h.dropUser(us, "live backfill failed")
			return false
		}
		us.lastSeq = st.Seq
		h.m.Backfilled()
		h.fanOut(us, st.Seq, st.Data, st.Origin, time.Time{})
	}
	return true
}

// Catch-up checks come when the cluster has just been shaken (a new
// leader, routes back); the store may not answer at once, so a failed
// check is tried again a little later, a few times.
const (
	checkRetries = 10
	checkBackoff = 2 * time.Second
)

// checkStore delivers whatever the store holds for us beyond the last
// message handled. Unlike a gap in live messages, a failed check does not
// drop the user's sessions: it is tried again.
func (h *Hub) checkStore(us *userState, attempt string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	for n := 0; n < h.cfg.MaxBackfill; n++ {
		st, err := h.inbox.Next(ctx, us.user, us.lastSeq+1)
		if err == storage.ErrEnd {
			return
		}
		if err != nil {
			a, _ := strconv.Atoi(attempt)
			if a >= checkRetries {
				h.log.Warn("store check failed; giving up", "user", us.user, "err", err)
				return
			}
			h.log.Debug("store check failed; trying again", "user", us.user, "attempt", a, "err", err)
			time.AfterFunc(checkBackoff, func() {
				ctx, cancel := context.WithTimeout(context.Background(), checkBackoff)
				defer cancel()
				h.live.Check(ctx, us.user, a+1)
			})
			return
		}
		us.lastSeq = st.Seq
		h.m.Backfilled()
		h.fanOut(us, st.Seq, st.Data, st.Origin, time.Time{})
	}
	h.dropUser(us, "more missed messages than the backfill limit")
}

// dropUser closes every session of us; clients reconnect and sync.
func (h *Hub) dropUser(us *userState, why string) {
	h.warn.warn("drop-user", "closing a user's sessions to make them resync",
		"user", us.user, "why", why)
	if p := us.sessions.Load(); p != nil {
		for _, s := range *p {
			go s.Shutdown(protocol.CodeSlowConsumer, "missed live messages; reconnect and sync")
		}
	}
}

// EachUser calls fn with every user online on this node.
func (h *Hub) EachUser(fn func(user string)) {
	h.users.each(func(us *userState) { fn(us.user) })
}

// CatchUp makes every online user's shard read, from the store, whatever
// was stored for them after the last message it handled. The node calls
// it when the stream's leader changes: a leader that died after storing
// a message but before republishing it leaves no gap for a later
// message to reveal until the next one arrives.
func (h *Hub) CatchUp(ctx context.Context) {
	h.users.each(func(us *userState) {
		if ctx.Err() == nil {
			h.live.Check(ctx, us.user, 1)
		}
	})
}
