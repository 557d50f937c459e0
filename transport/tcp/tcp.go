// Package tcp carries the onechat protocol over plain TCP: one JSON frame
// per line, each ended by '\n' ("\r\n" is accepted too).
//
// Lines suit the protocol: encoded JSON never holds a raw newline, and a
// person can talk to the node with nc. A frame over the limit is refused
// while it streams in, so a huge line never allocates more than the limit.
package tcp

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
)

// Config configures the TCP transport.
type Config struct {
	MaxFrame     int
	WriteTimeout time.Duration
}

// readBufferSize is each connection's read buffer. Longer lines are
// gathered in a separate buffer that is released after a large frame.
const readBufferSize = 1024

// Server accepts TCP connections and runs a session on each.
type Server struct {
	hub *session.Hub
	log *slog.Logger
	cfg Config
	wg  sync.WaitGroup
}

// NewServer returns a Server feeding hub.
func NewServer(hub *session.Hub, log *slog.Logger, cfg Config) *Server {
	return &Server{hub: hub, log: log, cfg: cfg}
}

// Serve accepts connections on ln until ln is closed; then it returns nil.
func (srv *Server) Serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// Out of file descriptors, most often: wait and keep serving
			// the connections already open.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			srv.log.Warn("tcp accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		srv.wg.Go(func() { srv.serve(nc) })
	}
}

// Wait waits for every connection goroutine to return.
func (srv *Server) Wait() { srv.wg.Wait() }

func (srv *Server) serve(nc net.Conn) {
	c := &conn{nc: nc, writeTimeout: srv.cfg.WriteTimeout}
	s := srv.hub.Open(c)
	err := readLines(bufio.NewReaderSize(nc, readBufferSize), srv.cfg.MaxFrame, s)
	_ = nc.Close()
	s.Closed(err)
}

// frameHandler is the part of a session the reader needs.
type frameHandler interface {
	Handle([]byte)
	TooLarge(n int)
}

// readLines reads newline-ended frames until the connection fails.
func readLines(br *bufio.Reader, maxFrame int, h frameHandler) error {
	var long []byte // a line longer than the read buffer, gathered
	skipping := 0   // >0: bytes of an oversized line seen so far
	for {
		chunk, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		full := err == nil
		switch {
		case skipping > 0:
			skipping += len(chunk)
		case len(long)+len(chunk) > maxFrame+2: // +2: the line ending
			skipping = len(long) + len(chunk)
			long = nil
		case !full || len(long) > 0:
			long = append(long, chunk...)
		}
		if !full {
			continue
		}
		switch {
		case skipping > 0:
			h.TooLarge(skipping)
			skipping = 0
		case len(long) > 0:
			handleLine(long, h)
			if cap(long) > 4*readBufferSize {
				long = nil // do not keep a large buffer on an idle connection
			} else {
				long = long[:0]
			}
		default:
			handleLine(chunk, h)
		}
	}
}

func handleLine(line []byte, h frameHandler) {
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return // blank lines are allowed between frames
	}
	h.Handle(line)
}

// conn adapts a TCP connection to session.Conn.
type conn struct {
	nc           net.Conn
	writeTimeout time.Duration
}

var newline = []byte{'\n'}

func (c *conn) Write(frames [][]byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	bufs := make(net.Buffers, 0, 2*len(frames))
	for _, f := range frames {
		bufs = append(bufs, f, newline)
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

func (c *conn) Close(protocol.Code, string) { _ = c.nc.Close() }
func (c *conn) Transport() string           { return "tcp" }
func (c *conn) RemoteAddr() string          { return c.nc.RemoteAddr().String() }
