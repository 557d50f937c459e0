// Package ws carries the onechat protocol over WebSocket (github.com/lxzan/gws):
// one JSON frame per WebSocket message.
package ws

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
)

// Config configures the WebSocket transport.
type Config struct {
	MaxFrame     int           // frames above it get frame_too_large
	WriteTimeout time.Duration // longest a write may block
	// ReadBufferSize is gws's per-connection read buffer. It is most of a
	// connection's memory; frames larger than it are still read whole.
	ReadBufferSize int
}

// Handler upgrades HTTP requests to WebSocket sessions.
type Handler struct {
	hub     *session.Hub
	log     *slog.Logger
	cfg     Config
	up      *gws.Upgrader
	readers sync.Pool // *bufio.Reader of cfg.ReadBufferSize
}

// hardLimitFactor sets how far past MaxFrame a frame is still read, so
// that the client gets a frame_too_large error and keeps its connection.
// Beyond it gws closes the connection with 1009 (message too big).
const hardLimitFactor = 4

// NewHandler returns a Handler feeding hub.
func NewHandler(hub *session.Hub, log *slog.Logger, cfg Config) *Handler {
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = 512
	}
	h := &Handler{hub: hub, log: log, cfg: cfg}
	h.readers.New = func() any { return bufio.NewReaderSize(nil, cfg.ReadBufferSize) }
	h.up = gws.NewUpgrader(events{}, &gws.ServerOption{
		ReadBufferSize:     cfg.ReadBufferSize,
		ReadMaxPayloadSize: cfg.MaxFrame * hardLimitFactor,
		ParallelEnabled:    false, // true would reorder a connection's frames
		ParallelGolimit:    1,
		CheckUtf8Enabled:   false, // the protocol checks and answers bad_utf8
		HandshakeTimeout:   5 * time.Second,
		Recovery:           gws.Recovery,
		Logger:             gwsLogger{log},
		NewSession:         func() gws.SessionStorage { return &slot{} },
	})
	return h
}

// ServeHTTP upgrades the request. A token may come as ?token= or an
// Authorization: Bearer header, with an optional ?after= cursor to resume
// from; otherwise the first frame must be auth.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st := &state{token: q.Get("token"), writeTimeout: h.cfg.WriteTimeout}
	if st.token == "" {
		st.token, _ = auth.BearerToken(r.Header.Get("Authorization"))
	}
	if a := q.Get("after"); a != "" {
		after, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(protocol.EncodeError(protocol.Errorf(protocol.CodeBadField,
				"after must be a non-negative integer")))
			return
		}
		st.after = &after
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	netConn, brw, err := hj.Hijack()
	if err != nil {
		h.log.Debug("websocket hijack failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// A client sends nothing before the server's handshake reply, so
	// net/http's 4 KiB reader is normally empty and a small pooled one
	// replaces it.
	br := brw.Reader
	if br.Buffered() == 0 {
		br = h.readers.Get().(*bufio.Reader)
		br.Reset(netConn)
	}
	lc := &lockedConn{Conn: netConn}
	socket, err := h.up.UpgradeFromConn(lc, br, r)
	if err != nil {
		h.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	st.s = h.hub.Open(&conn{socket: socket, lc: lc, writeTimeout: h.cfg.WriteTimeout})
	socket.Session().Store("", st)
	go h.readLoop(socket, lc, st.s)
}

// readLoop runs gws's reader. gws recovers panics in our callbacks but not
// in its own frame parser: gws v1.9.1 panics on a 64-bit frame length of
// 2^63 or more. A panic here must cost one connection, not the node.
func (h *Handler) readLoop(socket *gws.Conn, lc *lockedConn, s *session.Session) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Warn("websocket reader failed; connection dropped",
				"remote", lc.RemoteAddr().String(), "panic", r)
			_ = lc.Close()
			s.Closed(fmt.Errorf("websocket reader: %v", r))
		}
	}()
	socket.ReadLoop()
}

// events receives gws callbacks for every connection; the session rides
// in the connection's storage slot.
type events struct{}

// state is what a connection's storage slot holds.
type state struct {
	s            *session.Session
	writeTimeout time.Duration
	token        string  // from the upgrade request, used once at open
	after        *uint64 // cursor to resume from, with token
}

// stateOf returns the connection's state; every socket gets one before
// its read loop starts.
func stateOf(socket *gws.Conn) *state {
	v, _ := socket.Session().Load("")
	st, _ := v.(*state)
	return st
}

// OnOpen runs on the read goroutine before the first frame, so an auth
// from the upgrade request (and its sync) comes before any frame is read.
func (events) OnOpen(socket *gws.Conn) {
	st := stateOf(socket)
	if st == nil || st.token == "" {
		return
	}
	token := st.token
	st.token = ""
	if perr := st.s.Authenticate(token, st.after); perr != nil {
		go st.s.Shutdown(perr.Code, perr.Text)
	}
}

func (events) OnClose(socket *gws.Conn, err error) {
	if st := stateOf(socket); st != nil {
		st.s.Closed(err)
	}
}

func (events) OnPing(socket *gws.Conn, payload []byte) {
	st := stateOf(socket)
	if st == nil {
		return
	}
	st.s.Touch()
	// Every write sets its own deadline: the one left by the last frame
	// written may have passed long ago.
	_ = socket.SetWriteDeadline(time.Now().Add(st.writeTimeout))
	_ = socket.WritePong(payload)
}

func (events) OnPong(socket *gws.Conn, _ []byte) {
	if st := stateOf(socket); st != nil {
		st.s.Touch()
	}
}

func (events) OnMessage(socket *gws.Conn, m *gws.Message) {
	defer m.Close()
	if st := stateOf(socket); st != nil {
		st.s.Handle(m.Bytes())
	}
}

// conn adapts a gws connection to session.Conn. Frames from the session
// are framed here and written together with one writev, instead of one
// write call per frame through gws: on a busy connection that is most of
// the cost of sending. gws's own writes (pongs, close frames) go through
// the same lockedConn, so frames never interleave on the wire.
type conn struct {
	socket       *gws.Conn
	lc           *lockedConn
	writeTimeout time.Duration
}

func (c *conn) Write(frames [][]byte) error {
	if err := c.lc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	headers := make([]byte, 0, maxHeaderLen*len(frames))
	bufs := make(net.Buffers, 0, 2*len(frames))
	for _, f := range frames {
		start := len(headers)
		headers = appendTextHeader(headers, len(f)) // never reallocates
		bufs = append(bufs, headers[start:], f)
	}
	return c.lc.writeBuffers(&bufs)
}

// maxHeaderLen is the longest header of an unmasked server frame.
const maxHeaderLen = 10

// appendTextHeader appends the header of a final, unmasked text frame
// with an n-byte payload (RFC 6455 section 5.2).
func appendTextHeader(b []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
}

// lockedConn serializes writes to a connection between gws and conn.
type lockedConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *lockedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *lockedConn) writeBuffers(b *net.Buffers) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := b.WriteTo(c.Conn)
	return err
}

func (c *conn) Close(code protocol.Code, text string) {
	if code == protocol.CodeSlowConsumer {
		// A write may be stuck on this client; a close frame would queue
		// behind it.
		_ = c.socket.NetConn().Close()
		return
	}
	_ = c.lc.SetWriteDeadline(time.Now().Add(time.Second))
	reason := string(code) + ": " + text
	if len(reason) > 120 {
		reason = reason[:120]
	}
	_ = c.socket.WriteClose(CloseCode(code), []byte(reason))
}

func (c *conn) Transport() string  { return "ws" }
func (c *conn) RemoteAddr() string { return c.socket.RemoteAddr().String() }

// CloseCode is the WebSocket close code sent with a protocol close
// reason; the reason text starts with the protocol code.
func CloseCode(code protocol.Code) uint16 {
	switch code {
	case protocol.CodeShuttingDown:
		return 1001
	case protocol.CodeTokenExpired:
		return 4001
	case protocol.CodeIdleTimeout:
		return 4002
	case protocol.CodeAuthRequired:
		return 4003
	case protocol.CodeAuthFailed:
		return 4004
	case protocol.CodeTooManyConns:
		return 4005
	case protocol.CodeSlowConsumer:
		return 4006
	}
	return 4000
}

// slot is a one-value gws.SessionStorage; gws's default is a map and a
// mutex per connection.
type slot struct{ v any }

func (s *slot) Len() int {
	if s.v == nil {
		return 0
	}
	return 1
}
func (s *slot) Load(string) (any, bool) { return s.v, s.v != nil }
func (s *slot) Delete(string)           { s.v = nil }
func (s *slot) Store(_ string, v any)   { s.v = v }
func (s *slot) Range(f func(string, any) bool) {
	if s.v != nil {
		f("", s.v)
	}
}

type gwsLogger struct{ log *slog.Logger }

func (l gwsLogger) Error(v ...any) { l.log.Error("websocket", "detail", v) }
