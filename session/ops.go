package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/storage"
)

func (s *Session) handleAuth(f *protocol.Frame) {
	if perr := s.authLocked(f.Token, f.Ref, f.After); perr != nil {
		perr.Ref = f.Ref
		s.replyError(perr)
	}
}

// authLocked verifies token. The first success registers the session
// with its user; a later one for the same user extends the session to the
// new token's expiry (a client refreshes its token this way). With after,
// the session starts with a sync from that cursor before any live message,
// so a reconnecting client resumes without a window for reordering.
func (s *Session) authLocked(token, ref string, after *uint64) *protocol.Error {
	claims, err := s.hub.verify.Verify(token)
	switch {
	case errors.Is(err, auth.ErrExpired):
		return protocol.Errorf(protocol.CodeTokenExpired, "%v", err)
	case err != nil:
		return protocol.Errorf(protocol.CodeAuthFailed, "%v", err)
	}
	if s.user != "" && claims.User != s.user {
		return protocol.Errorf(protocol.CodeAuthFailed,
			"connection is authenticated as %q; a token for %q cannot replace it", s.user, claims.User)
	}
	h := s.hub
	ok := protocol.Encode(protocol.OK{
		Op: protocol.OpOK, Ref: ref, User: claims.User, Session: s.id, Node: h.name,
		Ping:     h.cfg.PingInterval.Milliseconds(),
		Timeout:  h.cfg.IdleTimeout.Milliseconds(),
		MaxFrame: h.cfg.MaxFrame,
		Exp:      claims.Expiry.Unix(),
		Nodes:    h.peers.Nodes(),
	})
	if s.user != "" {
		s.expires.Store(claims.Expiry.Unix())
		s.reply(ok)
		return nil
	}
	var expired bool
	if after != nil {
		var perr *protocol.Error
		if expired, perr = h.checkCursor(s.ctx, *after); perr != nil {
			return perr
		}
		s.beginSync()
	}
	s.user = claims.User
	// Not derived from s.ctx: a child would leave a map in it for the
	// life of the connection.
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	if perr := h.register(ctx, s, ok); perr != nil {
		s.user = ""
		s.endSync(0)
		return perr
	}
	s.expires.Store(claims.Expiry.Unix())
	h.log.Debug("connection authenticated", "session", s.id, "user", s.user)
	if after != nil {
		s.runSync(ref, *after, expired, skipRange{})
	}
	return nil
}

func (s *Session) handleSend(f *protocol.Frame) {
	if f.From != "" && f.From != s.user {
		s.replyError(&protocol.Error{Code: protocol.CodeBadField,
			Text: "from is set by the server; leave it out", Ref: f.Ref})
		return
	}
	if !s.allowSend() {
		s.replyError(&protocol.Error{Code: protocol.CodeRateLimited,
			Text: "too many sends; slow down and retry", Ref: f.Ref})
		return
	}
	ack, perr := s.hub.Send(s.user, f, s.id)
	if perr != nil {
		perr.Ref = f.Ref
		s.replyError(perr)
		return
	}
	s.reply(protocol.Encode(ack))
}

func (s *Session) allowSend() bool {
	if s.hub.cfg.SendRate < 0 {
		return true
	}
	if s.limiter == nil {
		s.limiter = rate.NewLimiter(rate.Limit(s.hub.cfg.SendRate), s.hub.cfg.SendBurst)
	}
	return s.limiter.Allow()
}

// handleSync streams every stored message after the client's cursor, then
// a synced frame.
func (s *Session) handleSync(f *protocol.Frame) {
	after := cursorOf(f.After)
	expired, perr := s.hub.checkCursor(s.ctx, after)
	if perr != nil {
		perr.Ref = f.Ref
		s.replyError(perr)
		return
	}
	s.runSync(f.Ref, after, expired, s.beginSync())
}

func cursorOf(after *uint64) uint64 {
	if after == nil {
		return 0
	}
	return *after
}

// skipRange is the span of sequences this connection has already been
// sent live; a sync does not send them again.
type skipRange struct{ from, to uint64 }

func (r skipRange) has(seq uint64) bool { return r.from != 0 && seq >= r.from && seq <= r.to }

// beginSync suspends live delivery. Live messages that arrive during the
// sync are not queued beside stored ones (that would break order): the
// sync reads on until the store has nothing newer, so it sends them
// itself.
func (s *Session) beginSync() skipRange {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncing, s.missed = true, false
	return skipRange{from: s.liveFrom, to: s.cursor}
}

// How long a sync keeps trying when the store does not answer, as while a
// cluster elects a new leader. Live delivery stays suspended meanwhile:
// ending the sync early would let a newer live message overtake the ones
// not yet read, and a client's cursor would skip them.
const (
	syncRetryFor   = 30 * time.Second
	syncRetryPause = 500 * time.Millisecond
)

func (s *Session) runSync(ref string, after uint64, expired bool, skip skipRange) {
	s.hub.m.Synced()
	cursor, total := after, 0
	deadline := time.Now().Add(syncRetryFor)
	for {
		c, count, err := s.syncFrom(cursor, skip)
		cursor, total = c, total+count
		if err == nil {
			s.reply(protocol.Encode(protocol.Synced{
				Op: protocol.OpSynced, Ref: ref, Cursor: cursor, Expired: expired, Count: total,
			}))
			return
		}
		if s.ctx.Err() != nil {
			s.endSync(cursor)
			return
		}
		if errors.Is(err, errClientStuck) || time.Now().After(deadline) {
			s.endSync(cursor)
			code, text := protocol.CodeUnavailable, "the store did not answer; reconnect and resume from your cursor"
			if errors.Is(err, errClientStuck) {
				code, text = protocol.CodeSlowConsumer, "the client did not read its sync; reconnect and resume"
			}
			s.closeLocked(code, text)
			return
		}
		s.hub.log.Debug("sync interrupted; trying again", "session", s.id, "err", err)
		select {
		case <-s.ctx.Done():
		case <-time.After(syncRetryPause):
		}
	}
}

// errClientStuck is a sync stopped because the client does not read.
var errClientStuck = errors.New("session: client does not read")

func (s *Session) syncFrom(after uint64, skip skipRange) (cursor uint64, count int, err error) {
	h := s.hub
	cursor = after
	for {
		ctx, cancel := context.WithTimeout(s.ctx, h.cfg.StoreTimeout)
		st, err := h.inbox.Next(ctx, s.user, cursor+1)
		cancel()
		if errors.Is(err, storage.ErrEnd) {
			// Checking for missed messages and leaving sync mode happen
			// under one lock, so a live message is either seen as missed
			// here or delivered live after.
			s.mu.Lock()
			if s.missed {
				s.missed = false
				s.mu.Unlock()
				continue
			}
			s.endSyncLocked(cursor)
			s.mu.Unlock()
			return cursor, count, nil
		}
		if err != nil {
			return cursor, count, err
		}
		cursor = st.Seq
		if skip.has(st.Seq) {
			continue
		}
		frame, ferr := protocol.MsgFrame(st.Data, st.Seq)
		if ferr != nil {
			continue // not written by onechat; nothing a client could read
		}
		if err := s.out.pushWait(s.ctx, frame); err != nil {
			return cursor, count, fmt.Errorf("%w: %v", errClientStuck, err)
		}
		count++
	}
}

func (s *Session) endSync(cursor uint64) {
	s.mu.Lock()
	s.endSyncLocked(cursor)
	s.mu.Unlock()
}

func (s *Session) endSyncLocked(cursor uint64) {
	s.syncing = false
	if cursor > s.cursor {
		s.cursor = cursor
	}
}
