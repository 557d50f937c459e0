package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// acker publishes to JetStream and matches the acks to their callers. It
// does what jetstream.PublishMsg does with less work per message: one
// wildcard reply subscription read by one goroutine, a map of waiters,
// and a hand parser for the common ack, instead of a request context,
// options and a reflective JSON decode per publish. Appends are the hot
// path of every send.
type acker struct {
	nc     *nats.Conn
	prefix string // reply subject prefix, unique to this acker
	sub    *nats.Subscription
	ch     chan *nats.Msg
	done   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	next uint64
	wait map[uint64]chan ackResult
}

type ackResult struct {
	seq uint64
	dup bool
	err error
}

func newAcker(nc *nats.Conn) (*acker, error) {
	a := &acker{
		nc:     nc,
		prefix: "_OC_ACK." + nuid.Next() + ".",
		ch:     make(chan *nats.Msg, 8192),
		done:   make(chan struct{}),
		wait:   make(map[uint64]chan ackResult),
	}
	sub, err := nc.ChanSubscribe(a.prefix+"*", a.ch)
	if err != nil {
		return nil, fmt.Errorf("storage: ack subscription: %w", err)
	}
	a.sub = sub
	a.wg.Go(a.run)
	return a, nil
}

func (a *acker) close() {
	_ = a.sub.Unsubscribe()
	close(a.done)
	a.wg.Wait()
}

// publish sends m to JetStream and waits for its ack or ctx.
func (a *acker) publish(ctx context.Context, m *nats.Msg) ackResult {
	ch := make(chan ackResult, 1)
	a.mu.Lock()
	a.next++
	id := a.next
	a.wait[id] = ch
	a.mu.Unlock()

	m.Reply = a.prefix + strconv.FormatUint(id, 36)
	if err := a.nc.PublishMsg(m); err != nil {
		a.forget(id)
		return ackResult{err: err}
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		a.forget(id)
		return ackResult{err: ctx.Err()}
	}
}

func (a *acker) forget(id uint64) {
	a.mu.Lock()
	delete(a.wait, id)
	a.mu.Unlock()
}

func (a *acker) run() {
	for {
		select {
		case <-a.done:
			return
		case m := <-a.ch:
			a.deliver(m)
		}
	}
}

func (a *acker) deliver(m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, a.prefix), 36, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	ch := a.wait[id]
	delete(a.wait, id)
	a.mu.Unlock()
	if ch != nil {
		ch <- parseAck(m)
	}
}

var (
	seqKey = []byte(`"seq":`)
	dupKey = []byte(`"duplicate":`)
	errKey = []byte(`"error"`)
)

// after returns what follows key in b, without leading spaces, or nil.
func after(b, key []byte) []byte {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil
	}
	return bytes.TrimLeft(b[i+len(key):], " ")
}

// parseAck reads a JetStream publish ack: {"stream":"S","seq":N} with an
// optional "duplicate":true, an API error, or a no-responders status.
func parseAck(m *nats.Msg) ackResult {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return ackResult{err: nats.ErrNoResponders}
	}
	if bytes.Contains(m.Data, errKey) {
		var e struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Error == nil {
			return ackResult{err: fmt.Errorf("storage: unreadable ack %q", m.Data)}
		}
		return ackResult{err: e.Error}
	}
	rest := after(m.Data, seqKey)
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil || seq == 0 {
		return ackResult{err: fmt.Errorf("storage: unreadable ack %q", m.Data)}
	}
	return ackResult{seq: seq, dup: bytes.HasPrefix(after(m.Data, dupKey), []byte("true"))}
}
