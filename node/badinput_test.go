package node_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/onechat/onechat/node"
)

// Each bad frame gets its error code, and the connection keeps serving.
func TestBadFramesKeepConnection(t *testing.T) {
	tn := startNode(t)
	eve := tn.tcp(t, "eve")
	eve.auth("eve")
	bob := tn.tcp(t, "bob")
	bob.auth("bob")

	cases := []struct {
		name, frame, code, ref string
	}{
		{"malformed JSON", `{"op":"send",`, "bad_json", ""},
		{"not an object", `[1,2]`, "bad_json", ""},
		{"trailing garbage", `{"op":"ping"} x`, "bad_json", ""},
		{"unknown op", `{"op":"dance","ref":"u1"}`, "unknown_op", "u1"},
		{"missing op", `{"ref":"m0"}`, "missing_field", "m0"},
		{"missing to", `{"op":"send","ref":"m1","body":1}`, "missing_field", "m1"},
		{"empty to", `{"op":"send","ref":"m2","to":"","body":1}`, "missing_field", "m2"},
		{"missing body", `{"op":"send","ref":"m3","to":"bob"}`, "missing_field", "m3"},
		{"null body", `{"op":"send","ref":"m4","to":"bob","body":null}`, "missing_field", "m4"},
		{"to not a string", `{"op":"send","ref":"t1","to":5,"body":1}`, "bad_field", "t1"},
		{"after not a number", `{"op":"sync","ref":"s1","after":"x"}`, "bad_field", "s1"},
		{"after negative", `{"op":"sync","after":-1}`, "bad_field", ""},
		{"ref with control char", `{"op":"ping","ref":"a\nb"}`, "bad_field", ""},
		{"ref too long", `{"op":"ping","ref":"` + strings.Repeat("r", 129) + `"}`, "bad_field", ""},
		{"from set by client", `{"op":"send","ref":"f1","from":"bob","to":"bob","body":1}`, "bad_field", "f1"},
		{"invalid UTF-8", "{\"op\":\"send\",\"to\":\"bob\",\"body\":\"\xff\xfe\"}", "bad_utf8", ""},
		{"to with space", `{"op":"send","ref":"b1","to":"a b","body":1}`, "bad_user", "b1"},
		{"to with tab", `{"op":"send","ref":"b2","to":"a\tb","body":1}`, "bad_user", "b2"},
		{"to with control char", `{"op":"send","ref":"b3","to":"a\u0001b","body":1}`, "bad_user", "b3"},
		{"to with format char", `{"op":"send","ref":"b4","to":"a\u200eb","body":1}`, "bad_user", "b4"},
		{"to over 128 bytes", `{"op":"send","ref":"b5","to":"` + strings.Repeat("x", 129) + `","body":1}`,
			"bad_user", "b5"},
		{"cursor ahead of store", `{"op":"sync","ref":"c1","after":999999}`, "bad_cursor", "c1"},
		{"frame over the limit", `{"op":"send","to":"bob","body":"` + strings.Repeat("x", 70<<10) + `"}`,
			"frame_too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eve.t = t
			eve.sendRaw([]byte(tc.frame))
			f := eve.expectError(tc.code)
			if f.Ref != tc.ref || f.Error == "" {
				t.Fatalf("error frame %+v, want ref %q and a text", f, tc.ref)
			}
			eve.alive()
		})
	}
	eve.t = t
	// Nothing reached bob, and bob's connection was never disturbed.
	bob.alive()
	eve.sendTo("bob", "after-all", text("still here"))
	if m := bob.expect("msg"); bodyText(t, m) != "still here" {
		t.Fatalf("bob got %+v", m)
	}
}

// A line of several megabytes is refused as it streams in, and the
// connection goes on.
func TestTCPHugeLine(t *testing.T) {
	tn := startNode(t)
	c := tn.tcp(t, "huge")
	c.auth("huge")
	line := append([]byte(`{"op":"send","to":"bob","body":"`), bytes.Repeat([]byte("y"), 8<<20)...)
	c.sendRaw(append(line, `"}`...))
	c.expectError("frame_too_large")
	c.alive()
}

func TestBeforeAuth(t *testing.T) {
	tn := startNode(t)
	c := tn.tcp(t, "anon")
	c.send(map[string]any{"op": "send", "ref": "s1", "to": "bob", "body": 1})
	if f := c.expectError("auth_required"); f.Ref != "s1" {
		t.Fatalf("ref %q", f.Ref)
	}
	c.send(map[string]any{"op": "sync"})
	c.expectError("auth_required")
	c.alive()

	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("another-secret-another-secret-another"))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice"}).
		SignedString([]byte(testSecret))
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "a b", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix(),
	}).SignedString([]byte(testSecret))

	for _, tc := range []struct{ name, token, code string }{
		{"garbage", "not-a-token", "auth_failed"},
		{"forged", other, "auth_failed"},
		{"alg none", none, "auth_failed"},
		{"no exp", noExp, "auth_failed"},
		{"bad subject", badSub, "auth_failed"},
		{"expired", expired, "token_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(map[string]string{"op": "auth", "token": tc.token, "ref": "a"})
			if f := c.expectError(tc.code); f.Ref != "a" {
				t.Fatalf("ref %q", f.Ref)
			}
			c.alive()
		})
	}
	c.t = t
	c.send(map[string]any{"op": "send", "to": "bob", "body": 1})
	c.expectError("auth_required")
	c.auth("alice")
	// A token for someone else cannot take over the connection.
	c.send(map[string]string{"op": "auth", "token": token(t, "mallory")})
	c.expectError("auth_failed")
	if ack := c.sendTo("bob", "x", 1); ack.ID == "" {
		t.Fatal("no ack")
	}
}

func TestWebSocketBadFrames(t *testing.T) {
	tn := startNode(t)
	c := tn.ws(t, "eve")
	c.auth("eve")
	c.sendRaw([]byte("{\"op\":\"ping\",\"ref\":\"\xc3\x28\"}"))
	c.expectError("bad_utf8")
	c.sendRaw([]byte(`{"op":"send","to":"bob","body":"` + strings.Repeat("x", 70<<10) + `"}`))
	c.expectError("frame_too_large")
	c.alive()

	// Far past the limit, the WebSocket layer closes with 1009 before
	// reading the message into memory; other connections carry on.
	other := tn.ws(t, "other")
	other.auth("other")
	_ = c.write(bytes.Repeat([]byte("z"), 1<<20))
	err := c.ended()
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Fatalf("close: %v, want 1009", err)
	}
	other.alive()
}

func TestWebSocketBadTokenInURL(t *testing.T) {
	tn := startNode(t)
	c := dialWS(t, "ws://"+tn.HTTPAddr()+"/ws?token=forged", "eve", nil)
	c.expectError("auth_failed")
	err := c.ended()
	if code := websocket.CloseStatus(err); code != 4004 {
		t.Fatalf("close: %v, want 4004", err)
	}
}

// IDs with subject syntax are encoded: they reach exactly their user.
func TestUserIDsWithSubjectSyntax(t *testing.T) {
	tn := startNode(t)
	alice := tn.tcp(t, "alice")
	alice.auth("alice")
	star := tn.ws(t, "star")
	star.auth("*")
	gt := tn.ws(t, "gt")
	gt.auth(">")
	dotted := tn.tcp(t, "dotted")
	dotted.auth("bob.smith@example.com")
	bob := tn.tcp(t, "bob")
	bob.auth("bob")

	alice.sendTo("bob", "1", text("for bob"))
	if m := bob.expect("msg"); bodyText(t, m) != "for bob" {
		t.Fatalf("bob got %+v", m)
	}
	for _, to := range []struct {
		user string
		c    *client
	}{{"*", star}, {">", gt}, {"bob.smith@example.com", dotted}} {
		alice.sendTo(to.user, "to-"+to.user, text("for "+to.user))
		if m := to.c.expect("msg"); m.To != to.user || bodyText(t, m) != "for "+to.user {
			t.Fatalf("%s got %+v", to.user, m)
		}
	}
	// No one got another user's message: each next frame is the pong.
	for _, c := range []*client{star, gt, dotted, bob} {
		c.alive()
	}
}

func TestLimits(t *testing.T) {
	tn := startNode(t, func(c *node.Config) {
		c.Session.SendRate = 1
		c.Session.SendBurst = 2
		c.Session.MaxConnsPerUser = 2
	})
	a := tn.tcp(t, "a1")
	a.auth("alice")
	a.sendTo("bob", "1", 1)
	a.sendTo("bob", "2", 1)
	a.send(map[string]any{"op": "send", "ref": "3", "to": "bob", "body": 1})
	if f := a.expectError("rate_limited"); f.Ref != "3" {
		t.Fatalf("ref %q", f.Ref)
	}
	a.alive()

	tn.ws(t, "a2").auth("alice")
	a3 := tn.tcp(t, "a3")
	a3.send(map[string]string{"op": "auth", "token": token(t, "alice")})
	a3.expectError("too_many_conns")
	a3.alive()
}

func TestHTTPErrors(t *testing.T) {
	tn := startNode(t)
	for _, tc := range []struct {
		name, method, path, user, body, code string
		status                               int
	}{
		{"no token", "POST", "/v1/messages", "", `{"op":"send","to":"b","body":1}`, "auth_required", 401},
		{"bad json", "POST", "/v1/messages", "a", `{"op":`, "bad_json", 400},
		{"wrong op", "POST", "/v1/messages", "a", `{"op":"sync"}`, "unknown_op", 400},
		{"missing body", "POST", "/v1/messages", "a", `{"op":"send","to":"b"}`, "missing_field", 400},
		{"bad user", "POST", "/v1/messages", "a", `{"op":"send","to":"a b","body":1}`, "bad_user", 400},
		{"too large", "POST", "/v1/messages", "a",
			`{"op":"send","to":"b","body":"` + strings.Repeat("x", 70<<10) + `"}`, "frame_too_large", 413},
		{"bad after", "GET", "/v1/messages?after=x", "a", "", "bad_field", 400},
		{"cursor ahead", "GET", "/v1/messages?after=99999", "a", "", "bad_cursor", 400},
		{"method", "DELETE", "/v1/messages", "a", "", "method_not_allowed", 405},
		{"method before auth", "PUT", "/v1/messages", "", "", "method_not_allowed", 405},
		{"health method", "DELETE", "/healthz", "", "", "method_not_allowed", 405},
		{"ws method", "POST", "/ws", "", "", "method_not_allowed", 405},
		{"no route", "GET", "/v2/nothing", "a", "", "not_found", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, f := tn.httpDo(t, tc.method, tc.path, tc.user, tc.body)
			if status != tc.status || f.Op != "error" || f.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", status, f, tc.status, tc.code)
			}
		})
	}
	// The scheme name is case-insensitive.
	req, _ := http.NewRequest("GET", "http://"+tn.HTTPAddr()+"/v1/messages", nil)
	req.Header.Set("Authorization", "bearer "+token(t, "a"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("lower-case bearer: %d", resp.StatusCode)
	}
}

// A WebSocket frame claiming a 64-bit length of 2^63 or more once made gws
// slice with a negative length and panic, killing the node.
func TestWebSocketHugeLengthDoesNotCrash(t *testing.T) {
	tn := startNode(t)
	other := tn.tcp(t, "other")
	other.auth("other")

	conn, err := net.Dial("tcp", tn.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	frame := []byte{0x81, 0xff}
	frame = binary.BigEndian.AppendUint64(frame, 1<<63)
	if _, err := conn.Write(append(frame, "abcd"...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	other.alive()
}
