package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/onechat/onechat/auth"
	"github.com/onechat/onechat/node"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

// testNode is a node on a temp dir with ports picked at run time.
type testNode struct {
	*node.Node
	cfg node.Config
}

func startNode(t testing.TB, tweak ...func(*node.Config)) *testNode {
	t.Helper()
	cfg := node.Config{
		DataDir:   t.TempDir(),
		HTTPAddr:  "127.0.0.1:0",
		TCPAddr:   "127.0.0.1:0",
		NATSAddr:  "127.0.0.1:0",
		JWTSecret: testSecret,
		Log:       testLogger(t),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	tn := &testNode{cfg: cfg}
	tn.start(t)
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

func (tn *testNode) start(t testing.TB) {
	t.Helper()
	n, err := node.Start(context.Background(), tn.cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn.Node = n
}

func (tn *testNode) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tn.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// alive checks the node still serves a new connection.
func (tn *testNode) alive(t testing.TB) {
	t.Helper()
	c := tn.tcp(t, "probe")
	c.auth("probe")
	c.alive()
}

// restart stops the node and starts it again on the same data directory.
func (tn *testNode) restart(t testing.TB) {
	t.Helper()
	tn.stop(t)
	tn.start(t)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func token(t testing.TB, user string) string {
	t.Helper()
	return tokenTTL(t, user, time.Hour)
}

func tokenTTL(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Sign([]byte(testSecret), user, ttl)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// frame is any server frame; fields not in a given op stay zero.
type frame struct {
	Op      string          `json:"op"`
	Ref     string          `json:"ref"`
	User    string          `json:"user"`
	Session string          `json:"session"`
	Ping    int64           `json:"ping"`
	Timeout int64           `json:"timeout"`
	Code    string          `json:"code"`
	Error   string          `json:"error"`
	ID      string          `json:"id"`
	Seq     uint64          `json:"seq"`
	TS      int64           `json:"ts"`
	Dup     bool            `json:"dup"`
	From    string          `json:"from"`
	To      string          `json:"to"`
	Body    json.RawMessage `json:"body"`
	Cursor  uint64          `json:"cursor"`
	Expired bool            `json:"expired"`
	Count   int             `json:"count"`
	More    bool            `json:"more"`
	Msgs    []frame         `json:"msgs"`
	Nodes   []struct {
		Name, WS, TCP, HTTP string
	} `json:"nodes"`
}

// client is a test client on any socket transport. Frames are read by a
// goroutine into a channel, so a test waits on them with a timeout.
type client struct {
	t      testing.TB
	name   string
	write  func([]byte) error
	wsPing func(context.Context) error // WebSocket clients only
	close  func()
	frames chan frame
	done   chan error // receives the read error when the connection ends
}

const waitFrame = 10 * time.Second

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.write(b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

// next returns the next frame, failing the test after waitFrame.
func (c *client) next() frame {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case err := <-c.done:
		// The reader queues every frame before it reports the end, so
		// frames still queued come first.
		select {
		case f := <-c.frames:
			c.done <- err
			return f
		default:
		}
		c.t.Fatalf("%s: connection ended while waiting for a frame: %v", c.name, err)
	case <-time.After(waitFrame):
		c.t.Fatalf("%s: no frame within %s", c.name, waitFrame)
	}
	return frame{}
}

// expect returns the next frame and fails unless its op is op.
func (c *client) expect(op string) frame {
	c.t.Helper()
	f := c.next()
	if f.Op != op {
		c.t.Fatalf("%s: got %+v, want op %q", c.name, f, op)
	}
	return f
}

// expectError returns the next frame and fails unless it is an error
// with code.
func (c *client) expectError(code string) frame {
	c.t.Helper()
	f := c.expect("error")
	if f.Code != code {
		c.t.Fatalf("%s: got error %q (%s), want %q", c.name, f.Code, f.Error, code)
	}
	return f
}

// alive checks the connection still serves: a ping gets its pong next.
func (c *client) alive() {
	c.t.Helper()
	c.send(map[string]string{"op": "ping", "ref": "alive"})
	f := c.expect("pong")
	if f.Ref != "alive" {
		c.t.Fatalf("%s: pong ref %q", c.name, f.Ref)
	}
}

func (c *client) auth(user string) frame {
	c.t.Helper()
	c.send(map[string]string{"op": "auth", "token": token(c.t, user)})
	return c.expect("ok")
}

// sendTo sends body to user with ref and returns the ack.
func (c *client) sendTo(to, ref string, body any) frame {
	c.t.Helper()
	c.send(map[string]any{"op": "send", "ref": ref, "to": to, "body": body})
	return c.expect("ack")
}

// ended waits for the connection to end and returns the read error.
func (c *client) ended() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(waitFrame):
		c.t.Fatalf("%s: connection still open after %s", c.name, waitFrame)
	}
	return nil
}

func newClient(t testing.TB, name string) *client {
	return &client{t: t, name: name, frames: make(chan frame, 4096), done: make(chan error, 1)}
}

func (c *client) deliver(b []byte) {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Errorf("%s: server sent a frame that is not JSON: %q", c.name, b)
		return
	}
	c.frames <- f
}

// dialTCP connects a raw TCP client: newline-delimited JSON.
func dialTCP(t testing.TB, addr, name string) *client {
	t.Helper()
	c, err := tryDialTCP(t, addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDialTCP(t testing.TB, addr, name string) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial tcp %s: %w", addr, err)
	}
	c := newClient(t, name)
	c.write = func(b []byte) error {
		_, err := conn.Write(append(b, '\n'))
		return err
	}
	c.close = func() { conn.Close() }
	go func() {
		r := bufio.NewReaderSize(conn, 128<<10)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				c.done <- err
				return
			}
			c.deliver(line)
		}
	}()
	t.Cleanup(c.close)
	return c, nil
}

// dialWS connects a WebSocket client from github.com/coder/websocket, a
// different library from the server's.
func dialWS(t testing.TB, url, name string, header http.Header) *client {
	t.Helper()
	c, err := tryDialWS(t, url, name, header)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDialWS(t testing.TB, url, name string, header http.Header) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, fmt.Errorf("dial ws %s: %w", url, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	conn.SetReadLimit(1 << 20)
	c := newClient(t, name)
	c.write = func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return conn.Write(ctx, websocket.MessageText, b)
	}
	c.close = func() { conn.CloseNow() }
	c.wsPing = conn.Ping
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.done <- err
				return
			}
			c.deliver(b)
		}
	}()
	t.Cleanup(c.close)
	return c, nil
}

func (tn *testNode) ws(t testing.TB, name string) *client {
	return dialWS(t, "ws://"+tn.HTTPAddr()+"/ws", name, nil)
}

func (tn *testNode) tcp(t testing.TB, name string) *client {
	return dialTCP(t, tn.TCPAddr(), name)
}

// httpDo sends an HTTP request as user and decodes the JSON answer.
func (tn *testNode) httpDo(t testing.TB, method, path, user, body string) (int, frame) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+tn.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+token(t, user))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("http %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("http %s %s: body is not JSON: %q", method, path, b)
	}
	return resp.StatusCode, f
}

func bodyText(t testing.TB, f frame) string {
	t.Helper()
	var v struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(f.Body, &v); err != nil {
		t.Fatalf("body %s: %v", f.Body, err)
	}
	return v.Text
}

func text(s string) map[string]string { return map[string]string{"text": s} }

func refN(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
