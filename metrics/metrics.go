// Package metrics holds the node's Prometheus metrics. The chat core calls
// the methods of Chat on its hot paths; each is an atomic add or a
// histogram observation, and every method is a no-op on a nil *Chat, so
// code and tests that do not care pass nil.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onechat/onechat/protocol"
)

// Transports label connections.
var Transports = []string{"ws", "tcp"}

// Chat is the chat core's metrics.
type Chat struct {
	reg *prometheus.Registry

	conns      map[string]prometheus.Gauge
	sessions   prometheus.Gauge
	users      prometheus.Gauge
	msgsIn     prometheus.Counter
	msgsOut    prometheus.Counter
	dups       prometheus.Counter
	store      prometheus.Observer
	delivery   prometheus.Observer
	slow       prometheus.Counter
	syncs      prometheus.Counter
	errs       map[protocol.Code]prometheus.Counter
	errsOther  prometheus.Counter
	backfilled prometheus.Counter
}

// New returns Chat with its metrics registered in a registry of its own,
// next to Go's runtime and process collectors.
func New() *Chat {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Chat{reg: reg, conns: map[string]prometheus.Gauge{}, errs: map[protocol.Code]prometheus.Counter{}}

	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onechat_connections", Help: "Open client connections, by transport.",
	}, []string{"transport"})
	f(conns)
	for _, t := range Transports {
		m.conns[t] = conns.WithLabelValues(t)
	}
	m.sessions = gauge(f, "onechat_sessions", "Authenticated client connections.")
	m.users = gauge(f, "onechat_online_users", "Users with at least one session on this node.")
	m.msgsIn = counter(f, "onechat_messages_in_total", "Messages accepted from senders and stored.")
	m.msgsOut = counter(f, "onechat_messages_out_total",
		"Messages offered to client connections: one per connection of the recipient on this node.")
	m.dups = counter(f, "onechat_messages_duplicate_total", "Sends recognised as retries of a stored message.")
	m.slow = counter(f, "onechat_slow_consumers_total", "Connections closed because the client did not read.")
	m.syncs = counter(f, "onechat_sync_requests_total",
		"Syncs served (sync frames, resuming auths, HTTP pages).")
	m.backfilled = counter(f, "onechat_live_backfilled_total",
		"Messages read from the store because their live copy was lost.")
	m.store = histogram(f, "onechat_store_seconds",
		"Time to store one copy of a message, until JetStream's ack.")
	m.delivery = histogram(f, "onechat_delivery_seconds",
		"Time from a message being stored to its live copy being queued to connections on this node.")
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onechat_errors_total", Help: "Error frames sent to WebSocket and TCP clients, by code.",
	}, []string{"code"})
	f(errs)
	for _, c := range protocol.Codes() {
		m.errs[c] = errs.WithLabelValues(string(c))
	}
	m.errsOther = errs.WithLabelValues("other")
	return m
}

func gauge(reg func(prometheus.Collector), name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	reg(g)
	return g
}

func counter(reg func(prometheus.Collector), name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	reg(c)
	return c
}

// Buckets from 100 µs to about 13 s: store and delivery latencies here
// range from well under a millisecond to a leader election.
func histogram(reg func(prometheus.Collector), name, help string) prometheus.Observer {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: name, Help: help, Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	})
	reg(h)
	return h
}

// Register adds collectors of other parts of the node (NATS health).
func (m *Chat) Register(c prometheus.Collector) {
	if m != nil {
		m.reg.MustRegister(c)
	}
}

// Handler serves the metrics in Prometheus' text format.
func (m *Chat) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ConnOpened counts a connection of transport opening.
func (m *Chat) ConnOpened(transport string) {
	if m != nil {
		if g := m.conns[transport]; g != nil {
			g.Inc()
		}
	}
}

// ConnClosed counts a connection of transport closing.
func (m *Chat) ConnClosed(transport string) {
	if m != nil {
		if g := m.conns[transport]; g != nil {
			g.Dec()
		}
	}
}

// SessionAdded counts an authenticated connection; firstOfUser says the
// user was not online on the node before.
func (m *Chat) SessionAdded(firstOfUser bool) {
	if m != nil {
		m.sessions.Inc()
		if firstOfUser {
			m.users.Inc()
		}
	}
}

// SessionRemoved undoes SessionAdded.
func (m *Chat) SessionRemoved(lastOfUser bool) {
	if m != nil {
		m.sessions.Dec()
		if lastOfUser {
			m.users.Dec()
		}
	}
}

// Stored counts one copy stored, taking d.
func (m *Chat) Stored(d time.Duration) {
	if m != nil {
		m.store.Observe(d.Seconds())
	}
}

// Accepted counts a send acknowledged; dup says it was a retry.
func (m *Chat) Accepted(dup bool) {
	if m != nil {
		m.msgsIn.Inc()
		if dup {
			m.dups.Inc()
		}
	}
}

// Delivered counts n frames queued to connections for a message stored
// at stored; a zero stored (backfilled messages) skips the latency.
func (m *Chat) Delivered(n int, stored time.Time) {
	if m != nil {
		m.msgsOut.Add(float64(n))
		if !stored.IsZero() {
			m.delivery.Observe(time.Since(stored).Seconds())
		}
	}
}

// Backfilled counts a message read from the store to fill a live gap.
func (m *Chat) Backfilled() {
	if m != nil {
		m.backfilled.Inc()
	}
}

// SlowConsumer counts a connection dropped for not reading.
func (m *Chat) SlowConsumer() {
	if m != nil {
		m.slow.Inc()
	}
}

// Synced counts a sync served.
func (m *Chat) Synced() {
	if m != nil {
		m.syncs.Inc()
	}
}

// Error counts an error frame with code.
func (m *Chat) Error(code protocol.Code) {
	if m == nil {
		return
	}
	if c := m.errs[code]; c != nil {
		c.Inc()
		return
	}
	m.errsOther.Inc()
}

// Health is what the node reports about its embedded NATS server and its
// place in the cluster, read at each scrape.
type Health struct {
	Ready          func() bool   // the node serves (/readyz)
	Routes         func() int    // route connections to other nodes
	Nodes          func() int    // nodes heard from, this one included
	JetStreamReady func() bool   // JetStream is in touch with its meta leader
	StreamLeader   func() bool   // this node leads the inbox stream
	SlowConsumers  func() uint64 // NATS connections the server found too slow
}

// RegisterHealth adds gauges that read h at each scrape.
func (m *Chat) RegisterHealth(h Health) {
	if m == nil {
		return
	}
	b := func(f func() bool) func() float64 {
		return func() float64 {
			if f() {
				return 1
			}
			return 0
		}
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onechat_ready",
			Help: "1 while the node serves."}, b(h.Ready)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onechat_nats_routes",
			Help: "NATS route connections to other nodes."}, func() float64 { return float64(h.Routes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onechat_cluster_nodes",
			Help: "Nodes this node hears heartbeats from, itself included."},
			func() float64 { return float64(h.Nodes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onechat_jetstream_current",
			Help: "1 while JetStream is in touch with its meta leader."}, b(h.JetStreamReady)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onechat_inbox_stream_leader",
			Help: "1 while this node leads the inbox stream."}, b(h.StreamLeader)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "onechat_nats_slow_consumers_total",
			Help: "NATS connections the embedded server found too slow."},
			func() float64 { return float64(h.SlowConsumers()) }),
	)
}
