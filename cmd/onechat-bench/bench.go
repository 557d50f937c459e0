package main

import (
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lxzan/gws"
)

// bench is the state of one run.
type bench struct {
	cfg     *config
	nodes   []*node // one, or the cluster's; clients[i].home indexes it
	runID   string
	clients []*client
	pairs   []pair
	dialers []*net.Dialer

	// phases is fixed before any connection opens, so read goroutines
	// may look at it without locks. bStart is MaxInt64 until phase B.
	phases [numPhases]*phase
	bStart atomic.Int64

	pingMs     atomic.Int64 // ping interval the node asks for
	closing    atomic.Bool  // this tool is closing the connections
	unexpected atomic.Int64 // frames this tool does not expect
	stray      atomic.Int64 // msg frames not for the connection's partner pair

	mu        sync.Mutex
	dropped   map[string]*dropStat // connections the node closed, by reason
	otherErrs map[string]int64     // error frames without a phase ref
}

// dropStat counts connections closed for one reason, and when (seconds
// since the tool started), to tell a timeout from a burst.
type dropStat struct {
	Count  int64   `json:"count"`
	FirstS float64 `json:"first_s"`
	LastS  float64 `json:"last_s"`
}

// maxDropLogs is how many drops are logged one by one.
const maxDropLogs = 5

type pair struct{ sender, recipient *client }

func newBench(cfg *config, nodes []*node) (*bench, error) {
	runID, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, nodes: nodes, runID: runID,
		dropped: map[string]*dropStat{}, otherErrs: map[string]int64{}}
	b.phases = [numPhases]*phase{newPhase(0, 'a', true), newPhase(1, 'b', false)}
	b.bStart.Store(math.MaxInt64)
	for i := range cfg.N {
		c := newClient(b, fmt.Sprintf("u%06d", i))
		c.home = homeNode(cfg.Place, i, cfg.N, len(nodes))
		b.clients = append(b.clients, c)
	}
	// Roles are fixed before any read loop starts, so the read
	// goroutines may read them without locks.
	half := cfg.N / 2
	for i := range half {
		s, r := b.clients[i], b.clients[i+half]
		s.role, s.partner = roleSender, r.user
		r.role, r.partner = roleRecipient, s.user
	}
	for k := range cfg.SrcIPs {
		// 127.0.0.2 … : each source address has its own ephemeral
		// port range, so n connections need not fit in one.
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+k))}
		b.dialers = append(b.dialers, &net.Dialer{LocalAddr: src, Timeout: cfg.ConnTimeout})
	}
	return b, nil
}

// signTokens makes each user's token: HS256, sub = user, exp = now+1h.
func (b *bench) signTokens() ([]string, error) {
	exp := jwt.NewNumericDate(time.Now().Add(time.Hour))
	toks := make([]string, len(b.clients))
	for i, c := range b.clients {
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: c.user, ExpiresAt: exp})
		s, err := t.SignedString([]byte(b.nodes[0].secret)) // one secret for all nodes
		if err != nil {
			return nil, fmt.Errorf("sign token for %s: %w", c.user, err)
		}
		toks[i] = s
	}
	return toks, nil
}

// makePairs lists the sender/recipient pairs (i, i+n/2) whose
// connections are both up; only they take part in the message phases.
func (b *bench) makePairs() {
	half := len(b.clients) / 2
	for i := range half {
		s, r := b.clients[i], b.clients[i+half]
		if s.up.Load() && r.up.Load() {
			b.pairs = append(b.pairs, pair{s, r})
		}
	}
}

// connClosed records a connection the node (or the network) closed.
func (b *bench) connClosed(c *client, err error) {
	if b.closing.Load() {
		return
	}
	at := time.Since(started).Seconds()
	reason := closeReason(err)
	b.mu.Lock()
	d := b.dropped[reason]
	if d == nil {
		d = &dropStat{FirstS: at}
		b.dropped[reason] = d
	}
	d.Count++
	d.LastS = at
	var total int64
	for _, d := range b.dropped {
		total += d.Count
	}
	b.mu.Unlock()
	if total <= maxDropLogs {
		logf("connection of %s closed by the node: %s", c.user, reason)
	}
}

func (b *bench) countOtherErr(code string) {
	b.mu.Lock()
	b.otherErrs[code]++
	b.mu.Unlock()
}

func (b *bench) counts() (dropped map[string]dropStat, otherErrs map[string]int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dropped = make(map[string]dropStat, len(b.dropped))
	for k, d := range b.dropped {
		dropped[k] = *d
	}
	return dropped, copyMap(b.otherErrs)
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// closeAll closes every connection with a normal close frame, in
// parallel, and waits at most timeout for that to finish.
func (b *bench) closeAll(timeout time.Duration) {
	b.closing.Store(true)
	var wg sync.WaitGroup
	for _, c := range b.clients {
		if c.ws == nil {
			continue
		}
		wg.Go(func() {
			_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.ws.WriteClose(1000, nil)
			_ = c.ws.NetConn().Close()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// clientOption is the gws client configuration. Each connection gets a
// copy with its own Addr: gws fills defaults into the option it is given,
// so one value must not be shared between goroutines.
func clientOption(handshake time.Duration) gws.ClientOption {
	return gws.ClientOption{
		ReadBufferSize:      2048, // frames here are small; n of them add up
		ReadMaxPayloadSize:  1 << 20,
		WriteMaxPayloadSize: 1 << 20,
		ParallelGolimit:     1,
		HandshakeTimeout:    handshake,
		Logger:              quietLogger{},
		PermessageDeflate:   gws.PermessageDeflate{Enabled: false},
	}
}

// quietLogger drops gws's internal log lines; failures reach this tool as
// errors and close events, which it counts.
type quietLogger struct{}

func (quietLogger) Error(...any) {}
