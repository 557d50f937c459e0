package session

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/onechat/onechat/protocol"
)

// Conn is what a transport gives a session.
type Conn interface {
	// Write writes frames to the client in order. The session calls it
	// from one goroutine at a time; it blocks at most the write timeout.
	Write(frames [][]byte) error
	// Close ends the connection, telling the client code and text where
	// the transport has a way to (a WebSocket close frame).
	Close(code protocol.Code, text string)
	// Transport names the transport: "ws" or "tcp".
	Transport() string
	// RemoteAddr is the client's address, for logs.
	RemoteAddr() string
}

// Session is one client connection.
type Session struct {
	hub  *Hub
	conn Conn
	seq  uint64
	id   string
	out  outbox

	// ctx ends when the session starts closing; long operations (sync)
	// watch it. Sends do not: a message being stored is finished first.
	ctx    context.Context
	cancel context.CancelFunc

	hmu     sync.Mutex // held while a frame is handled
	closed  bool       // under hmu: no more frames are handled
	limiter *rate.Limiter

	openedAt   time.Time
	lastActive atomic.Int64 // unix ns of the last frame received
	expires    atomic.Int64 // unix seconds of token expiry; 0 before auth

	// Set once at auth, under hmu, before the session is registered.
	user string
	us   *userState

	mu       sync.Mutex // live delivery state
	syncing  bool       // a sync is reading the store; live messages wait there
	missed   bool       // a live message arrived during the sync
	cursor   uint64     // highest sequence sent on this connection
	liveFrom uint64     // first sequence sent live on this connection

	ended atomic.Bool // Closed has run
	swept atomic.Bool // the sweeper has asked it to close
}

func newSession(h *Hub, conn Conn) *Session {
	now := h.now()
	seq := h.nextID.Add(1)
	s := &Session{hub: h, conn: conn, seq: seq, id: h.sessionID(seq), openedAt: now}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lastActive.Store(now.UnixNano())
	s.out = outbox{
		write:     conn.Write,
		onError:   s.writeFailed,
		maxFrames: h.cfg.OutboxFrames,
		maxBytes:  h.cfg.OutboxBytes,
	}
	h.log.Debug("connection opened", "session", s.id, "transport", conn.Transport(),
		"remote", conn.RemoteAddr())
	return s
}

// Handle handles one frame from the client. The transport calls it for
// each frame, in order, from its read loop; b may be reused afterwards.
func (s *Session) Handle(b []byte) {
	s.lastActive.Store(s.hub.now().UnixNano())
	f, perr := protocol.Decode(b, s.hub.cfg.MaxFrame)
	if f == nil || f.Op != protocol.OpSend {
		// Sends, the hot path, run on the reader; the rest on their own
		// stack.
		s.onOwnStack(func() { s.handle(f, perr) })
		return
	}
	s.handle(f, perr)
}

func (s *Session) handle(f *protocol.Frame, perr *protocol.Error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed {
		return
	}
	if perr != nil {
		s.replyError(perr)
		return
	}
	switch f.Op {
	case protocol.OpPing:
		s.reply(protocol.Encode(protocol.Pong{Op: protocol.OpPong, Ref: f.Ref}))
	case protocol.OpAuth:
		s.handleAuth(f)
	case protocol.OpSend:
		if s.requireAuth(f) {
			s.handleSend(f)
		}
	case protocol.OpSync:
		if s.requireAuth(f) {
			s.handleSync(f)
		}
	}
}

// Authenticate authenticates with a token the transport received out of
// band (a WebSocket query parameter or header), optionally resuming from
// cursor after like an auth frame's "after". It returns the error the
// client should get, or nil; an ok frame has been queued on success. Call
// it from the read loop, before the first Handle.
func (s *Session) Authenticate(token string, after *uint64) *protocol.Error {
	var perr *protocol.Error
	s.onOwnStack(func() {
		s.hmu.Lock()
		defer s.hmu.Unlock()
		perr = s.authLocked(token, "", after)
	})
	return perr
}

// onOwnStack runs fn on a short-lived goroutine and waits for it. The
// deep call chains of auth, sync and pings then grow that goroutine's
// stack, not the reader's: a reader parked on an idle connection keeps a
// small stack, which is most of what an idle connection costs.
func (s *Session) onOwnStack(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// TooLarge tells the client a frame of n bytes was refused. The transport
// calls it instead of Handle when it skipped an oversized frame.
func (s *Session) TooLarge(n int) {
	s.lastActive.Store(s.hub.now().UnixNano())
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed {
		return
	}
	s.replyError(protocol.Errorf(protocol.CodeFrameTooLarge,
		"frame of %d bytes or more refused; the limit is %d", n, s.hub.cfg.MaxFrame))
}

// Touch records client activity that is not a frame (a WebSocket ping).
func (s *Session) Touch() { s.lastActive.Store(s.hub.now().UnixNano()) }

func (s *Session) requireAuth(f *protocol.Frame) bool {
	if s.user != "" {
		return true
	}
	s.replyError(&protocol.Error{Code: protocol.CodeAuthRequired,
		Text: "authenticate first: send {\"op\":\"auth\",\"token\":\"...\"}", Ref: f.Ref})
	return false
}

// reply queues a frame produced while handling a client frame, waiting
// for room: a client that sends faster than it reads is slowed down, and
// one that stops reading altogether is closed.
func (s *Session) reply(frame []byte) {
	// Not s.ctx: the ack of a message stored while the session began to
	// close must still reach the client.
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.cfg.WriteTimeout)
	defer cancel()
	err := s.out.pushOwn(ctx, frame)
	if err == context.DeadlineExceeded {
		s.closeLocked(protocol.CodeSlowConsumer, "the client did not read its replies")
	}
}

func (s *Session) replyError(e *protocol.Error) {
	s.hub.m.Error(e.Code)
	s.reply(protocol.EncodeError(e))
}

// deliver offers a live message. It never blocks: a client too slow to
// take it is disconnected and catches up with sync when it returns.
func (s *Session) deliver(seq uint64, frame []byte, origin string) {
	s.mu.Lock()
	if s.syncing {
		s.missed = true
		s.mu.Unlock()
		return
	}
	if seq <= s.cursor {
		s.mu.Unlock()
		return
	}
	s.cursor = seq
	if s.liveFrom == 0 {
		s.liveFrom = seq
	}
	if origin == s.id {
		s.mu.Unlock()
		return // the sender's own copy; it has the ack
	}
	ok := s.out.push(frame)
	s.mu.Unlock()
	if !ok {
		go s.Shutdown(protocol.CodeSlowConsumer, "the client did not read fast enough; reconnect and sync")
	}
}

// Shutdown closes the session once its in-flight frame is handled and its
// queue written, telling the client code and text.
func (s *Session) Shutdown(code protocol.Code, text string) {
	s.cancel()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.closeLocked(code, text)
}

func (s *Session) closeLocked(code protocol.Code, text string) {
	if s.closed {
		return
	}
	s.closed = true
	s.cancel()
	s.hub.unregister(s)
	s.hub.log.Debug("closing connection", "session", s.id, "user", s.user, "code", code)
	s.hub.m.Error(code)
	last := protocol.EncodeError(&protocol.Error{Code: code, Text: text})
	if code == protocol.CodeSlowConsumer {
		s.hub.m.SlowConsumer()
		// Its queue is full or stuck: drop it rather than wait for it.
		s.out.abort()
		s.conn.Close(code, text)
		return
	}
	s.out.close(last, func() { s.conn.Close(code, text) })
}

func (s *Session) writeFailed(err error) {
	s.hub.log.Debug("write failed", "session", s.id, "err", err)
	s.conn.Close(protocol.CodeSlowConsumer, "write failed")
}

// Closed tells the session its connection has ended. The transport calls
// it exactly once, after its read loop has stopped.
func (s *Session) Closed(err error) {
	if s.ended.Swap(true) {
		return
	}
	s.cancel()
	s.hmu.Lock()
	if !s.closed {
		s.closed = true
		s.hub.unregister(s)
	}
	s.hmu.Unlock()
	s.out.abort()
	s.hub.sessions.remove(s)
	s.hub.log.Debug("connection closed", "session", s.id, "user", s.user, "reason", err)
	s.hub.m.ConnClosed(s.conn.Transport())
	s.hub.open.Done()
}

// sweep closes sessions that stayed silent, never authenticated or hold
// an expired token. One pass a second replaces a timer per connection.
func (h *Hub) sweep(now time.Time) {
	ns, secs := now.UnixNano(), now.Unix()
	idle := h.cfg.IdleTimeout.Nanoseconds()
	authBy := now.Add(-h.cfg.AuthTimeout)
	h.sessions.each(func(s *Session) {
		if s.swept.Load() {
			return
		}
		exp := s.expires.Load()
		switch {
		case exp == 0 && s.openedAt.Before(authBy):
			s.swept.Store(true)
			go s.Shutdown(protocol.CodeAuthRequired, "no auth within "+h.cfg.AuthTimeout.String())
		case exp != 0 && secs >= exp:
			s.swept.Store(true)
			go s.Shutdown(protocol.CodeTokenExpired, "the token expired; reconnect with a new one")
		case ns-s.lastActive.Load() > idle:
			s.swept.Store(true)
			go s.Shutdown(protocol.CodeIdleTimeout, "no frame for "+h.cfg.IdleTimeout.String())
		}
	})
}
