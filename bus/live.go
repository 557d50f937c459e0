package bus

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
)

// Live holds the node's live subscriptions: one per online user, spread
// over a few NATS connections (shards) so that no single connection carries
// every user. Each shard delivers into one channel drained by one
// goroutine, so the messages of one user are handled in order and no
// goroutine exists per subscription or per message.
type Live struct {
	shards []liveShard
	seed   maphash.Seed
	handle func(*nats.Msg)
	wg     sync.WaitGroup
}

type liveShard struct {
	nc *nats.Conn
	ch chan *nats.Msg
}

// LiveConfig configures NewLive.
type LiveConfig struct {
	// Conns are the shard connections, one per shard; Live does not
	// close them.
	Conns []*nats.Conn
	// Buffer is each shard's channel capacity. A full channel drops
	// messages (NATS reports a slow consumer); the receiver sees a gap in
	// Nats-Last-Sequence and reads the missing messages from the store.
	Buffer int
	// Handle is called for every live message, from the shard goroutine.
	Handle func(*nats.Msg)
}

// NewLive returns a Live over cfg.Conns. Call Run to start delivery.
func NewLive(cfg LiveConfig) *Live {
	l := &Live{seed: maphash.MakeSeed(), handle: cfg.Handle}
	for _, nc := range cfg.Conns {
		l.shards = append(l.shards, liveShard{nc: nc, ch: make(chan *nats.Msg, cfg.Buffer)})
	}
	return l
}

// Run starts one goroutine per shard. They stop when ctx is done; Wait
// waits for them.
func (l *Live) Run(ctx context.Context) {
	for i := range l.shards {
		ch := l.shards[i].ch
		l.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-ch:
					l.handle(m)
				}
			}
		})
	}
}

// Wait blocks until the goroutines started by Run have returned.
func (l *Live) Wait() { l.wg.Wait() }

func (l *Live) shard(user string) *liveShard {
	return &l.shards[maphash.String(l.seed, user)%uint64(len(l.shards))]
}

// Check queues a nudge (a message with HeaderCheck carrying attempt, from
// 1) on user's shard, in order with the user's live messages. It waits
// while the shard's channel is full, until ctx ends.
func (l *Live) Check(ctx context.Context, user string, attempt int) {
	m := &nats.Msg{Subject: LiveSubject(user), Header: nats.Header{HeaderCheck: []string{strconv.Itoa(attempt)}}}
	select {
	case l.shard(user).ch <- m:
	case <-ctx.Done():
	}
}

// Subscribe subscribes to user's live subject and waits until the server
// has registered the interest, so a message stored after Subscribe
// returns is delivered live.
func (l *Live) Subscribe(ctx context.Context, user string) (*nats.Subscription, error) {
	sh := l.shard(user)
	sub, err := sh.nc.ChanSubscribe(LiveSubject(user), sh.ch)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", user, err)
	}
	if err := sh.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("bus: subscribe %s: flush: %w", user, err)
	}
	return sub, nil
}
