package session

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/storage"
)

// Send stores a message from user from and returns its ack. Every
// transport and the service API end here.
//
// The message is stored in the recipient's inbox first, deduplicated by
// the sender's ref, then in the sender's inbox. A retry after a lost ack
// finds the recipient's copy already stored and returns the first
// attempt's id. The sender's copy carries origin so the sending session is
// not sent its own message back. A message to oneself is stored once. The
// ack's seq is the message's place in the sender's own inbox.
//
// Only the recipient's copy carries a Nats-Msg-Id: JetStream keeps every
// ID for the dedup window, and one per message halves that memory. A retry
// looks for the sender's copy instead (see senderCopy); attempts with the
// same ref on one node are serialized so that it finds it.
func (h *Hub) Send(from string, f *protocol.Frame, origin string) (protocol.Ack, *protocol.Error) {
	ack, perr := h.send(from, f, origin)
	if perr == nil {
		h.m.Accepted(ack.Dup)
	}
	return ack, perr
}

func (h *Hub) send(from string, f *protocol.Frame, origin string) (protocol.Ack, *protocol.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()

	now := h.now()
	env := protocol.Envelope{ID: newMessageID(now), From: from, To: f.To, TS: now.UnixMilli(), Body: f.Body}
	data, err := protocol.AppendEnvelope(make([]byte, 0, 96+len(f.Body)), &env)
	if err != nil {
		return protocol.Ack{}, protocol.Errorf(protocol.CodeBadField, "body: %v", err)
	}
	var msgID string
	if f.Ref != "" {
		msgID = bus.Token(from) + "/" + f.Ref
		// Attempts with one ref on this node take turns, so a retry sees
		// the sender's copy of an attempt still in flight.
		defer h.refs.enter(msgID)()
	}

	self := f.To == from
	recipientOrigin := ""
	if self {
		recipientOrigin = origin
	}
	r, perr := h.appendCopy(ctx, f.To, data, msgID, recipientOrigin)
	if perr != nil {
		return protocol.Ack{}, perr
	}
	ack := protocol.Ack{Op: protocol.OpAck, Ref: f.Ref, ID: env.ID, Seq: r.Seq, TS: env.TS, Dup: r.Dup}
	if r.Dup {
		// The first attempt's envelope wins, so every copy and every
		// retry carry one id.
		if ack, data, perr = h.firstAttempt(ctx, ack, r.Seq); perr != nil || self {
			return ack, perr
		}
		if seq, found, perr := h.senderCopy(ctx, from, r.Seq, ack.ID); perr != nil || found {
			ack.Seq = seq
			return ack, perr
		}
	}
	if self {
		return ack, nil
	}
	rs, perr := h.appendCopy(ctx, from, data, "", origin)
	if perr != nil {
		return protocol.Ack{}, perr
	}
	ack.Seq = rs.Seq
	return ack, nil
}

// firstAttempt completes the ack of a duplicate with the id and time of
// the message first stored at seq, and returns that message's envelope.
func (h *Hub) firstAttempt(
	ctx context.Context, ack protocol.Ack, seq uint64,
) (protocol.Ack, []byte, *protocol.Error) {
	st, err := h.inbox.Get(ctx, seq)
	if err != nil {
		return ack, nil, h.storeError(err)
	}
	env, err := protocol.ParseEnvelope(st.Data)
	if err != nil {
		h.log.Error("stored message unreadable", "seq", seq, "err", err)
		return ack, nil, protocol.Errorf(protocol.CodeInternal, "stored message unreadable")
	}
	ack.ID, ack.TS = env.ID, env.TS
	return ack, st.Data, nil
}

// maxCopyScan bounds the search for a retried message's sender copy.
const maxCopyScan = 256

// senderCopy looks in from's inbox for the copy of message id that an
// earlier attempt may have stored after the recipient's copy at
// recipientSeq. Attempts racing on two nodes of a cluster can both miss
// it and store the sender's copy twice; both copies carry the same id.
func (h *Hub) senderCopy(
	ctx context.Context, from string, recipientSeq uint64, id string,
) (uint64, bool, *protocol.Error) {
	next := recipientSeq + 1
	for range maxCopyScan {
		st, err := h.inbox.Next(ctx, from, next)
		if errors.Is(err, storage.ErrEnd) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, h.storeError(err)
		}
		if protocol.EnvelopeHasID(st.Data, id) {
			return st.Seq, true, nil
		}
		next = st.Seq + 1
	}
	return 0, false, nil
}

func (h *Hub) appendCopy(
	ctx context.Context, user string, data []byte, msgID, origin string,
) (storage.AppendResult, *protocol.Error) {
	start := time.Now()
	r, err := h.inbox.Append(ctx, user, data, msgID, origin)
	if err != nil {
		return r, h.storeError(err)
	}
	h.m.Stored(time.Since(start))
	return r, nil
}

// storeError maps a store failure to what a client can act on.
func (h *Hub) storeError(err error) *protocol.Error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return protocol.Errorf(protocol.CodeFrameTooLarge, "message is larger than the store accepts")
	}
	switch {
	case errors.Is(err, context.Canceled):
		// The client went away mid-request; nobody reads the answer.
		return protocol.Errorf(protocol.CodeUnavailable, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		h.warn.warn("store-unavailable", "store unavailable", "err", err)
		return protocol.Errorf(protocol.CodeUnavailable,
			"the store did not answer in time; retry (a send with the same ref)")
	}
	h.log.Error("store failed", "err", err)
	return protocol.Errorf(protocol.CodeInternal, "the store failed; retry (a send with the same ref)")
}

// checkCursor validates a sync cursor against the stream's bounds and
// reports whether messages after it may have expired.
func (h *Hub) checkCursor(ctx context.Context, after uint64) (expired bool, perr *protocol.Error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	first, last, err := h.inbox.Bounds(ctx)
	if err != nil {
		return false, h.storeError(err)
	}
	if after > last {
		return false, protocol.Errorf(protocol.CodeBadCursor,
			"cursor %d is ahead of the store (last %d); sync from 0", after, last)
	}
	return first > after+1, nil
}

// Page reads up to limit of user's messages after the cursor, for the
// HTTP API. The result's Msgs are msg frames; More says another page
// follows.
func (h *Hub) Page(
	ctx context.Context, user string, after uint64, limit int,
) (protocol.Synced, *protocol.Error) {
	if limit <= 0 || limit > h.cfg.SyncPageLimit {
		limit = h.cfg.SyncPageLimit
	}
	expired, perr := h.checkCursor(ctx, after)
	if perr != nil {
		return protocol.Synced{}, perr
	}
	h.m.Synced()
	res := protocol.Synced{Op: protocol.OpSynced, Cursor: after, Expired: expired}
	for len(res.Msgs) < limit {
		st, err := h.next(ctx, user, res.Cursor+1)
		if errors.Is(err, storage.ErrEnd) {
			return res, nil
		}
		if err != nil {
			return protocol.Synced{}, h.storeError(err)
		}
		res.Cursor = st.Seq
		if frame, err := protocol.MsgFrame(st.Data, st.Seq); err == nil {
			res.Msgs = append(res.Msgs, frame)
			res.Count++
		}
	}
	_, err := h.next(ctx, user, res.Cursor+1)
	res.More = err == nil
	return res, nil
}

func (h *Hub) next(ctx context.Context, user string, from uint64) (storage.Stored, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	return h.inbox.Next(ctx, user, from)
}

// idEncoding is base32 with an alphabet in ASCII order, so message IDs
// sort by the time they were made.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newMessageID returns a 26-character ID: 48 bits of milliseconds, then
// 80 random bits.
func newMessageID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}

// refGate lets one send at a time proceed per ref. Only attempts with the
// same ref wait for each other; sends with different refs never do.
type refGate struct {
	seed   maphash.Seed
	shards [64]struct {
		mu   sync.Mutex
		busy map[string]chan struct{}
	}
}

func (g *refGate) init() {
	g.seed = maphash.MakeSeed()
	for i := range g.shards {
		g.shards[i].busy = make(map[string]chan struct{})
	}
}

// enter waits until no other send holds key, takes it, and returns the
// function that releases it.
func (g *refGate) enter(key string) (leave func()) {
	sh := &g.shards[maphash.String(g.seed, key)%uint64(len(g.shards))]
	for {
		sh.mu.Lock()
		held, ok := sh.busy[key]
		if !ok {
			mine := make(chan struct{})
			sh.busy[key] = mine
			sh.mu.Unlock()
			return func() {
				sh.mu.Lock()
				delete(sh.busy, key)
				sh.mu.Unlock()
				close(mine)
			}
		}
		sh.mu.Unlock()
		<-held
	}
}
