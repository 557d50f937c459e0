package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onechat/onechat/bus"
)

// StreamName is the JetStream stream holding every inbox.
const StreamName = "OC_INBOX"

// ErrEnd is returned by Next when no message follows the given sequence.
var ErrEnd = errors.New("storage: no further message")

// InboxConfig configures the inbox stream. Zero values take the defaults
// noted on each field.
type InboxConfig struct {
	Retention   time.Duration // how long messages are kept; default 30 days
	DedupWindow time.Duration // how long a ref deduplicates; default 2 minutes
	MaxMsgSize  int32         // largest stored message in bytes; required
	Replicas    int           // JetStream replicas; default 1
	// AllowShrink lets OpenInbox lower the retention, the largest message
	// or the replicas of an existing stream. In a cluster the stream is
	// shared, so one node's setting would delete or refuse messages for
	// every node; without it such a change is refused with ErrShrink.
	AllowShrink bool
}

// ErrShrink is returned by OpenInbox when the settings would lower limits
// of the existing stream and AllowShrink is not set.
var ErrShrink = errors.New("storage: settings would lower the existing stream's limits")

func (c *InboxConfig) applyDefaults() {
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = 2 * time.Minute
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
}

// Inbox stores and reads users' inboxes.
type Inbox struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	acks   *acker
	// replicated: reads by direct get may come from a replica a few
	// messages behind the leader; see Next.
	replicated bool
	// Changed lists the stream settings OpenInbox changed, as
	// "name old → new"; empty when it created the stream or changed nothing.
	Changed []string
}

// Stored describes one message in an inbox.
type Stored struct {
	Seq    uint64
	Data   []byte // the envelope; owned by the caller
	Origin string // the Oc-Origin header, if any
}

// OpenInbox creates or updates the inbox stream and returns a handle on it.
func OpenInbox(ctx context.Context, js jetstream.JetStream, cfg InboxConfig) (*Inbox, error) {
	cfg.applyDefaults()
	if cfg.DedupWindow > cfg.Retention {
		cfg.DedupWindow = cfg.Retention
	}
	sc := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "onechat user inboxes",
		Subjects:    []string{bus.InboxWildcard},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.Retention,
		Duplicates:  cfg.DedupWindow,
		MaxMsgSize:  cfg.MaxMsgSize,
		Replicas:    cfg.Replicas,
		AllowDirect: true,
		RePublish: &jetstream.RePublish{
			Source:      bus.InboxWildcard,
			Destination: bus.LiveTemplate,
		},
	}
	st, changed, err := ensureStream(ctx, js, sc, cfg.AllowShrink)
	if err != nil {
		return nil, err
	}
	acks, err := newAcker(js.Conn())
	if err != nil {
		return nil, err
	}
	return &Inbox{js: js, stream: st, acks: acks, replicated: cfg.Replicas > 1, Changed: changed}, nil
}

// ensureStream creates the stream, or brings an existing one to sc. It
// reports each setting it changed.
func ensureStream(
	ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, allowShrink bool,
) (jetstream.Stream, []string, error) {
	st, err := js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, sc)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return nil, nil, fmt.Errorf("storage: create stream %s: %w", sc.Name, err)
			}
			return st, nil, nil
		}
		st, err = js.Stream(ctx, sc.Name) // another node created it meanwhile
	}
	if err != nil {
		return nil, nil, fmt.Errorf("storage: stream %s: %w", sc.Name, err)
	}
	cur := st.CachedInfo().Config
	var changed, shrunk []string
	note := func(name string, from, to any, shrinks bool) {
		d := fmt.Sprintf("%s %v → %v", name, from, to)
		changed = append(changed, d)
		if shrinks {
			shrunk = append(shrunk, d)
		}
	}
	if cur.MaxAge != sc.MaxAge {
		note("retention", cur.MaxAge, sc.MaxAge, sc.MaxAge < cur.MaxAge)
	}
	if cur.MaxMsgSize != sc.MaxMsgSize {
		note("largest message", cur.MaxMsgSize, sc.MaxMsgSize, sc.MaxMsgSize < cur.MaxMsgSize)
	}
	if cur.Replicas != sc.Replicas {
		note("replicas", cur.Replicas, sc.Replicas, sc.Replicas < cur.Replicas)
	}
	if cur.Duplicates != sc.Duplicates {
		note("dedup window", cur.Duplicates, sc.Duplicates, false)
	}
	if len(shrunk) > 0 && !allowShrink {
		return nil, nil, fmt.Errorf("%w: %s (the stream is shared by every node; give all nodes the same "+
			"settings, or start one node with --allow-shrink to lower them for all)",
			ErrShrink, strings.Join(shrunk, ", "))
	}
	if len(changed) == 0 {
		return st, nil, nil
	}
	if st, err = js.UpdateStream(ctx, sc); err != nil {
		return nil, nil, fmt.Errorf("storage: update stream %s (%s): %w", sc.Name, strings.Join(changed, ", "), err)
	}
	return st, changed, nil
}

// Close stops waiting for acks; Appends in flight fail.
func (in *Inbox) Close() { in.acks.close() }

// AppendResult is the outcome of Append.
type AppendResult struct {
	Seq uint64
	Dup bool // an earlier append with the same msgID stored the message
}

// Append stores envelope in user's inbox. msgID, when set, deduplicates
// within the dedup window: a repeat returns the first append's sequence
// with Dup set and stores nothing. origin, when set, is kept in the
// Oc-Origin header.
func (in *Inbox) Append(
	ctx context.Context, user string, envelope []byte, msgID, origin string,
) (AppendResult, error) {
	m := &nats.Msg{Subject: bus.InboxSubject(user), Data: envelope}
	if origin != "" || msgID != "" {
		m.Header = make(nats.Header, 2)
	}
	if origin != "" {
		m.Header[bus.HeaderOrigin] = []string{origin}
	}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	r := in.acks.publish(ctx, m)
	if r.err != nil {
		return AppendResult{}, fmt.Errorf("storage: append to %s: %w", user, r.err)
	}
	return AppendResult{Seq: r.seq, Dup: r.dup}, nil
}

// Get returns the message stored at seq.
func (in *Inbox) Get(ctx context.Context, seq uint64) (Stored, error) {
	m, err := in.stream.GetMsg(ctx, seq)
	if err != nil {
		return Stored{}, fmt.Errorf("storage: get %d: %w", seq, err)
	}
	return Stored{Seq: m.Sequence, Data: m.Data}, nil
}

// Next returns the first message in user's inbox with a sequence of at
// least from, or ErrEnd.
//
// It reads by direct get, which any replica answers. A replica applies
// messages in order, so one that is behind lacks only the newest ones: a
// message it returns is the right one, but its "none" may be stale. With
// replicas, a "none" is therefore confirmed by the stream's leader.
func (in *Inbox) Next(ctx context.Context, user string, from uint64) (Stored, error) {
	m, err := in.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(bus.InboxSubject(user)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		if in.replicated {
			return in.nextFromLeader(ctx, user, from)
		}
		return Stored{}, ErrEnd
	}
	if err != nil {
		return Stored{}, fmt.Errorf("storage: next for %s from %d: %w", user, from, err)
	}
	return Stored{Seq: m.Sequence, Data: m.Data, Origin: m.Header.Get(bus.HeaderOrigin)}, nil
}

// nextFromLeader is Next answered by the stream's leader ($JS.API.STREAM.
// MSG.GET is served by the leader only).
func (in *Inbox) nextFromLeader(ctx context.Context, user string, from uint64) (Stored, error) {
	req, _ := json.Marshal(struct {
		Seq  uint64 `json:"seq"`
		Next string `json:"next_by_subj"`
	}{from, bus.InboxSubject(user)})
	r, err := in.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+StreamName, req)
	if err != nil {
		return Stored{}, fmt.Errorf("storage: next for %s from %d at the leader: %w", user, from, err)
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(r.Data, &resp); err != nil {
		return Stored{}, fmt.Errorf("storage: next for %s at the leader: %w", user, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return Stored{}, ErrEnd
	case resp.Error != nil:
		return Stored{}, fmt.Errorf("storage: next for %s at the leader: %s", user, resp.Error.Description)
	case resp.Message == nil:
		return Stored{}, fmt.Errorf("storage: next for %s at the leader: empty answer", user)
	}
	st := Stored{Seq: resp.Message.Seq, Data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		if h, err := nats.DecodeHeadersMsg(resp.Message.Header); err == nil {
			st.Origin = h.Get(bus.HeaderOrigin)
		}
	}
	return st, nil
}

// Last returns the sequence of the last message in user's inbox, or 0
// when it holds none.
func (in *Inbox) Last(ctx context.Context, user string) (uint64, error) {
	m, err := in.stream.GetLastMsgForSubject(ctx, bus.InboxSubject(user))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: last for %s: %w", user, err)
	}
	return m.Sequence, nil
}

// Leader returns the name of the server leading the inbox stream; on a
// single node that is the node itself.
func (in *Inbox) Leader(ctx context.Context) (string, error) {
	info, err := in.stream.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("storage: stream info: %w", err)
	}
	if info.Cluster == nil {
		return "", nil
	}
	return info.Cluster.Leader, nil
}

// Bounds returns the first and last sequence the stream holds. A cursor
// below first-1 means messages after it may have expired.
func (in *Inbox) Bounds(ctx context.Context) (first, last uint64, err error) {
	info, err := in.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("storage: stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}
