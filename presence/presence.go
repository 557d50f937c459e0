// Package presence answers whether users are online, across the cluster.
//
// A user is online while some node holds a session for them. Nothing is
// written when users connect or disconnect: each node already subscribes
// once to the live subject of every user online on it, and NATS keeps
// that interest cluster-wide for routing. Whether anyone is online is
// therefore a local lookup in the embedded server's interest table. Which
// devices are online is a probe: a request on the user's live subject
// that every node holding the user answers.
//
// When a node dies, its routes drop and its interest goes with them, so
// its users show offline as soon as the surviving nodes notice (see
// docs/design.md for the bound). A node that crashed comes back with no
// sessions, so nothing is stale; one that only hung still holds its
// connections and counts them again once its routes are back.
package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onechat/onechat/bus"
)

// Device is one connection of a user.
type Device struct {
	Node      string `json:"node"`
	Session   string `json:"session"`
	Transport string `json:"transport"`
}

// Status is a user's presence.
type Status struct {
	User   string `json:"user"`
	Online bool   `json:"online"`
	// Transports has one entry per connection, like Devices.
	Transports []string `json:"transports,omitempty"`
	Devices    []Device `json:"devices,omitempty"`
	// Partial says some node with the user online did not answer the
	// probe in time; Devices lacks its connections.
	Partial bool `json:"partial,omitempty"`
}

// Config is what a Directory is built from.
type Config struct {
	Node string // this node's name
	// Local returns user's connections on this node.
	Local func(user string) []Device
	// Interest returns how many nodes subscribe to a live subject, from
	// the embedded server's interest table.
	Interest func(subject string) int
	// Conn publishes probes and receives their answers.
	Conn *nats.Conn
	// Timeout bounds how long a lookup waits for answers; default 250ms.
	Timeout time.Duration
}

// Directory answers presence queries.
type Directory struct {
	cfg Config
}

// NewDirectory returns a Directory.
func NewDirectory(cfg Config) *Directory {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 250 * time.Millisecond
	}
	return &Directory{cfg: cfg}
}

// Lookup returns user's presence. It does not fail: nodes that do not
// answer in time are left out and the status is marked Partial.
func (d *Directory) Lookup(ctx context.Context, user string) Status {
	st := Status{User: user}
	// Wildcard listeners (a service on oc.live.*) match every user;
	// counting them on a subject no user has leaves the nodes that
	// subscribe for this user.
	nodes := d.cfg.Interest(bus.LiveSubject(user)) - d.cfg.Interest(noUserSubject)
	if nodes <= 0 {
		return st
	}
	st.Online = true
	answers, err := d.probe(ctx, user, nodes)
	if err != nil || len(answers) < nodes {
		st.Partial = true
	}
	for _, a := range answers {
		st.Devices = append(st.Devices, a...)
	}
	for _, dev := range st.Devices {
		st.Transports = append(st.Transports, dev.Transport)
	}
	return st
}

// noUserSubject is a live subject no user maps to: "~" alone is the token
// of the empty ID, which is not a valid user ID.
const noUserSubject = bus.LivePrefix + "~"

// probe asks every node holding user for its connections and collects up
// to want answers.
func (d *Directory) probe(ctx context.Context, user string, want int) ([][]Device, error) {
	nc := d.cfg.Conn
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	inbox := nc.NewRespInbox()
	// A small channel: a SubscribeSync would allocate its default 64k.
	ch := make(chan *nats.Msg, want+1)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("presence: probe %s: %w", user, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	m := &nats.Msg{Subject: bus.LiveSubject(user), Reply: inbox,
		Header: nats.Header{bus.HeaderProbe: []string{"1"}}}
	if err := nc.PublishMsg(m); err != nil {
		return nil, fmt.Errorf("presence: probe %s: %w", user, err)
	}
	var out [][]Device
	for len(out) < want {
		select {
		case r := <-ch:
			var a answer
			if json.Unmarshal(r.Data, &a) == nil {
				out = append(out, a.Devices)
			}
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

type answer struct {
	Node    string   `json:"node"`
	Devices []Device `json:"devices"`
}

// Answer replies to a probe received on a live subject with this node's
// connections of that user.
func (d *Directory) Answer(m *nats.Msg) {
	token, ok := strings.CutPrefix(m.Subject, bus.LivePrefix)
	if !ok || m.Reply == "" {
		return
	}
	user, err := bus.UserID(token)
	if err != nil {
		return
	}
	b, _ := json.Marshal(answer{Node: d.cfg.Node, Devices: d.cfg.Local(user)})
	_ = m.Respond(b)
}

// IsProbe reports whether a message on a live subject is a probe.
func IsProbe(m *nats.Msg) bool {
	return m.Header != nil && m.Header.Get(bus.HeaderProbe) != ""
}
