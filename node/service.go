package node

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/bus"
	"github.com/onechat/onechat/presence"
	"github.com/onechat/onechat/protocol"
	"github.com/onechat/onechat/session"
)

// service answers other services on bus.SendSubject: a send object with
// a "from" field, stored and delivered like any client's message. Sends
// from one sender are handled in order; different senders in parallel.
type service struct {
	hub      *session.Hub
	presence *presence.Directory
	log      *slog.Logger
	subs     []*nats.Subscription
	seed     maphash.Seed
	workers  []chan *nats.Msg
	lookups  chan struct{} // presence lookups in flight
	wg       sync.WaitGroup

	mu     sync.RWMutex // held by dispatch while it hands over a message
	closed bool         // under mu: workers are closed
}

func newService(hub *session.Hub, dir *presence.Directory, log *slog.Logger, workers int) *service {
	s := &service{hub: hub, presence: dir, log: log, seed: maphash.MakeSeed(),
		lookups: make(chan struct{}, maxLookups)}
	for range workers {
		ch := make(chan *nats.Msg, 1024)
		s.workers = append(s.workers, ch)
		s.wg.Go(func() {
			for m := range ch {
				s.handle(m)
			}
		})
	}
	return s
}

func (s *service) start(nc *nats.Conn) error {
	// A queue group: in a cluster, one node handles each request.
	sub, err := nc.QueueSubscribe(bus.SendSubject, "onechat", s.dispatch)
	if err != nil {
		return fmt.Errorf("service: subscribe %s: %w", bus.SendSubject, err)
	}
	s.subs = append(s.subs, sub)
	sub, err = nc.QueueSubscribe(bus.PresenceSubject, "onechat", s.dispatchPresence)
	if err != nil {
		return fmt.Errorf("service: subscribe %s: %w", bus.PresenceSubject, err)
	}
	s.subs = append(s.subs, sub)
	return nil
}

// maxLookups bounds presence lookups in flight on a node; each may wait
// a moment for other nodes to answer its probe.
const maxLookups = 256

// dispatchPresence runs each lookup on its own goroutine, as one waits
// for answers; at most maxLookups at once, beyond which it blocks.
func (s *service) dispatchPresence(m *nats.Msg) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return // the asker times out and asks again; another node answers
	}
	s.lookups <- struct{}{}
	s.wg.Go(func() {
		defer func() { <-s.lookups }()
		s.lookupPresence(m)
	})
}

// lookupPresence answers {"user":"bob"} with presence.Status.
func (s *service) lookupPresence(m *nats.Msg) {
	var q struct {
		User string `json:"user"`
	}
	if err := json.Unmarshal(m.Data, &q); err != nil {
		s.respond(m, protocol.EncodeError(protocol.Errorf(protocol.CodeBadJSON, "want {\"user\":\"...\"}")))
		return
	}
	if err := protocol.CheckUserID(q.User); err != nil {
		s.respond(m, protocol.EncodeError(protocol.Errorf(protocol.CodeBadUser, "user: %v", err)))
		return
	}
	s.respond(m, protocol.Encode(s.presence.Lookup(context.Background(), q.User)))
}

// dispatch runs on the subscription's goroutine. It blocks while the
// sender's worker is full, which pushes back on the NATS connection.
func (s *service) dispatch(m *nats.Msg) {
	var head struct {
		From string `json:"from"`
	}
	_ = json.Unmarshal(m.Data, &head) // errors are reported by handle
	w := maphash.String(s.seed, head.From) % uint64(len(s.workers))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.respond(m, protocol.EncodeError(protocol.Errorf(protocol.CodeShuttingDown,
			"the node is shutting down; retry")))
		return
	}
	s.workers[w] <- m
}

func (s *service) handle(m *nats.Msg) {
	f, perr := protocol.Decode(m.Data, s.hub.Config().MaxFrame)
	if perr == nil {
		perr = checkServiceSend(f)
	}
	if perr == nil {
		var ack protocol.Ack
		if ack, perr = s.hub.Send(f.From, f, ""); perr == nil {
			s.respond(m, protocol.Encode(ack))
			return
		}
		perr.Ref = f.Ref
	}
	s.log.Debug("service send refused", "code", perr.Code, "err", perr.Text)
	s.respond(m, protocol.EncodeError(perr))
}

func checkServiceSend(f *protocol.Frame) *protocol.Error {
	if f.Op != protocol.OpSend {
		return &protocol.Error{Code: protocol.CodeUnknownOp, Ref: f.Ref,
			Text: bus.SendSubject + " takes a send object: {\"op\":\"send\",\"from\":...}"}
	}
	if f.From == "" {
		return &protocol.Error{Code: protocol.CodeMissingField, Ref: f.Ref,
			Text: "a service send needs field \"from\""}
	}
	return nil
}

func (s *service) respond(m *nats.Msg, b []byte) {
	if m.Reply == "" {
		return
	}
	if err := m.Respond(b); err != nil {
		s.log.Debug("service reply failed", "err", err)
	}
}

// stop stops taking requests and waits for those taken to be answered.
func (s *service) stop() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	// Workers keep draining, so a dispatch blocked on a full worker
	// finishes and releases mu.
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, ch := range s.workers {
		close(ch)
	}
	s.wg.Wait()
}
