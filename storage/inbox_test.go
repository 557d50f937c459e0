package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func openTestInbox(t *testing.T) *Inbox {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	in, err := OpenInbox(context.Background(), js, InboxConfig{MaxMsgSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	return in
}

func TestInboxAppendNextDedup(t *testing.T) {
	in := openTestInbox(t)
	ctx := context.Background()
	a, err := in.Append(ctx, "bob", []byte("one"), "alice/r1", "")
	if err != nil || a.Dup {
		t.Fatalf("append: %+v %v", a, err)
	}
	b, err := in.Append(ctx, "bob.x", []byte("other user"), "", "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := in.Append(ctx, "bob", []byte("one, retried"), "alice/r1", "")
	if err != nil || !again.Dup || again.Seq != a.Seq {
		t.Fatalf("retry: %+v %v, want dup of %d", again, err, a.Seq)
	}
	st, err := in.Next(ctx, "bob", 1)
	if err != nil || st.Seq != a.Seq || string(st.Data) != "one" {
		t.Fatalf("next: %+v %v", st, err)
	}
	if _, err := in.Next(ctx, "bob", a.Seq+1); !errors.Is(err, ErrEnd) {
		t.Fatalf("past the end: %v", err)
	}
	if st, err := in.Next(ctx, "bob.x", 1); err != nil || st.Origin != "sess-1" || st.Seq != b.Seq {
		t.Fatalf("encoded user: %+v %v", st, err)
	}
	first, last, err := in.Bounds(ctx)
	if err != nil || first != 1 || last != b.Seq {
		t.Fatalf("bounds %d %d %v", first, last, err)
	}
}

func TestInboxAppendTooLarge(t *testing.T) {
	in := openTestInbox(t)
	_, err := in.Append(context.Background(), "bob", make([]byte, 2048), "", "")
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Fatalf("got %v, want message-too-large API error", err)
	}
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		data string
		seq  uint64
		dup  bool
		err  bool
	}{
		{`{"stream":"OC_INBOX","seq":42}`, 42, false, false},
		{`{"stream":"OC_INBOX","seq":7,"duplicate":true}`, 7, true, false},
		{`{"stream":"OC_INBOX","seq": 8,"duplicate": true}`, 8, true, false},
		{`{"stream":"OC_INBOX","seq":9,"duplicate":false}`, 9, false, false},
		{`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum"}}`,
			0, false, true},
		{`{"stream":"OC_INBOX"}`, 0, false, true},
		{`garbage`, 0, false, true},
	} {
		r := parseAck(&nats.Msg{Data: []byte(tc.data)})
		if r.seq != tc.seq || r.dup != tc.dup || (r.err != nil) != tc.err {
			t.Errorf("%s: got %+v", tc.data, r)
		}
	}
	r := parseAck(&nats.Msg{Header: nats.Header{"Status": {"503"}}})
	if !errors.Is(r.err, nats.ErrNoResponders) {
		t.Errorf("no responders: %v", r.err)
	}
}

// The leader's answer to "next message" matches the direct get's, headers
// included, and "none" is ErrEnd. (On one server the leader is that server;
// the cluster case is covered by the node's failover tests.)
func TestNextFromLeader(t *testing.T) {
	in := openTestInbox(t)
	ctx := context.Background()
	if _, err := in.Append(ctx, "bob", []byte(`{"a":1}`), "", "sess-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Append(ctx, "alice", []byte(`{"b":2}`), "", ""); err != nil {
		t.Fatal(err)
	}
	direct, err := in.Next(ctx, "bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	lead, err := in.nextFromLeader(ctx, "bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	if lead.Seq != direct.Seq || string(lead.Data) != string(direct.Data) || lead.Origin != "sess-1" {
		t.Fatalf("leader %+v, direct %+v", lead, direct)
	}
	if _, err := in.nextFromLeader(ctx, "bob", lead.Seq+1); !errors.Is(err, ErrEnd) {
		t.Fatalf("after the last: %v, want ErrEnd", err)
	}
}

// Reopening the stream with lower limits is refused unless allowed;
// higher limits are applied and reported.
func TestOpenInboxRefusesToShrink(t *testing.T) {
	in := openTestInbox(t)
	js := in.js
	ctx := context.Background()
	base := InboxConfig{MaxMsgSize: 1024}
	for _, tc := range []struct {
		name    string
		cfg     InboxConfig
		wantErr bool
		changed string
	}{
		{"same", base, false, ""},
		{"shorter retention", InboxConfig{MaxMsgSize: 1024, Retention: time.Hour}, true, ""},
		{"smaller messages", InboxConfig{MaxMsgSize: 512}, true, ""},
		{"larger messages", InboxConfig{MaxMsgSize: 4096}, false, "largest message 1024 → 4096"},
		{"shorter, allowed", InboxConfig{MaxMsgSize: 4096, Retention: time.Hour, AllowShrink: true}, false,
			"retention 720h0m0s → 1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenInbox(ctx, js, tc.cfg)
			if tc.wantErr {
				if !errors.Is(err, ErrShrink) {
					t.Fatalf("err %v, want ErrShrink", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if joined := strings.Join(got.Changed, ", "); joined != tc.changed {
				t.Fatalf("changed %q, want %q", joined, tc.changed)
			}
		})
	}
}
