package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// inboxStream is the JetStream stream every inbox lives in
// (storage.StreamName).
const inboxStream = "OC_INBOX"

// streamStat is the inbox stream as the cluster reports it at one point
// of the run: which node leads it (and so takes the most JetStream work),
// whether the other replicas keep up, and how many messages it holds.
type streamStat struct {
	At       string   `json:"at"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"` // the followers: "n1 current", "n2 lag 12"
	Messages uint64   `json:"messages"`
}

// streamInfoReply is the part of a $JS.API.STREAM.INFO answer used here.
type streamInfoReply struct {
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
	State struct {
		Messages uint64 `json:"messages"`
	} `json:"state"`
	Cluster struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"cluster"`
}

// streamStat asks node n's NATS client port (loopback) about the inbox
// stream.
func (n *node) streamStat(at string) (*streamStat, error) {
	nc, err := nats.Connect("nats://"+n.natsAddr, nats.Name("onechat-bench"),
		nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return nil, fmt.Errorf("stream info: connect to %s's NATS port: %w", n.label(), err)
	}
	defer nc.Close()
	msg, err := nc.Request("$JS.API.STREAM.INFO."+inboxStream, nil, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("stream info via %s: %w", n.label(), err)
	}
	var r streamInfoReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return nil, fmt.Errorf("stream info via %s: %w", n.label(), err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("stream info via %s: %s", n.label(), r.Error.Description)
	}
	s := &streamStat{At: at, Leader: r.Cluster.Leader, Messages: r.State.Messages}
	for _, p := range r.Cluster.Replicas {
		state := "current"
		if !p.Current {
			state = fmt.Sprintf("not current, lag %d", p.Lag)
		}
		s.Replicas = append(s.Replicas, p.Name+" "+state)
	}
	return s, nil
}

// noteStream records the inbox stream's state in rep, in a cluster run;
// a failure to learn it becomes a note, not an error.
func (b *bench) noteStream(rep *report, at string) {
	if len(b.nodes) == 1 {
		return
	}
	s, err := b.nodes[0].streamStat(at)
	if err != nil {
		rep.Notes = append(rep.Notes, err.Error())
		return
	}
	rep.Stream = append(rep.Stream, *s)
	logf("inbox stream %s: leader %s, followers %s, %d messages",
		at, s.Leader, strings.Join(s.Replicas, ", "), s.Messages)
}
