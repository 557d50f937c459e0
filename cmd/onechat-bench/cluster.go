package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// openNodes starts or attaches to the node, or with --cluster starts the
// cluster, and waits until every node is ready.
func openNodes(ctx context.Context, cfg *config) ([]*node, error) {
	if cfg.Cluster == 0 {
		n, err := openNode(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return []*node{n}, nil
	}
	return startCluster(ctx, cfg)
}

// startCluster starts cfg.Cluster nodes n0, n1, … as one cluster: free
// loopback ports, a data directory each, one random secret, and every
// node's route address in every node's --routes. It waits until all of
// them answer /readyz. On any failure it stops the nodes it started.
func startCluster(ctx context.Context, cfg *config) ([]*node, error) {
	k := cfg.Cluster
	// http, tcp, nats and cluster for each node, all distinct.
	ports, err := freePorts(4 * k)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	routes := make([]string, k)
	for i := range k {
		routes[i] = "nats://" + ports[4*i+3]
	}
	var nodes []*node
	for i := range k {
		spec := childSpec{name: fmt.Sprintf("n%d", i), secret: secret,
			http: ports[4*i], tcp: ports[4*i+1], nats: ports[4*i+2],
			extra: []string{"--name", fmt.Sprintf("n%d", i), "--cluster", ports[4*i+3],
				"--routes", strings.Join(routes, ",")}}
		n, err := spawn(cfg, spec)
		if err != nil {
			stopNodes(nodes, cfg.StopTimeout)
			return nil, fmt.Errorf("start node n%d: %w", i, err)
		}
		nodes = append(nodes, n)
		logf("started node %s, pid %d, http %s, route %s", n.name, n.pid, n.httpAddr, ports[4*i+3])
	}
	logf("waiting for /readyz on all %d nodes (the cluster forms first)", k)
	start := time.Now()
	if err := waitAllReady(ctx, nodes, cfg.StartTimeout); err != nil {
		stopNodes(nodes, cfg.StopTimeout)
		return nil, err
	}
	logf("cluster ready in %.1fs", time.Since(start).Seconds())
	return nodes, nil
}

// waitAllReady waits for every node's /readyz in parallel. The first
// node to fail ends the wait for all: without it the others cannot form
// the cluster and would only wait out the timeout.
func waitAllReady(ctx context.Context, nodes []*node, timeout time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			if errs[i] = n.waitReady(ctx, timeout); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// The first cause, not the waits it cut short.
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		first = cmp.Or(first, err)
	}
	return first
}

// stopResult is how one node stopped.
type stopResult struct {
	took   time.Duration
	status string
}

// stopNodes stops every started node in parallel (see node.stop), so
// the slowest sets the time it takes, and removes their data directories.
func stopNodes(nodes []*node, timeout time.Duration) []stopResult {
	res := make([]stopResult, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			took, status := n.stop(timeout)
			res[i] = stopResult{took, status}
		})
	}
	wg.Wait()
	return res
}

// homeNode is the index of the node connection i of n opens on, for k
// nodes: senders (i < n/2) on node i%k, each recipient on the node after
// its sender's, so that every message crosses from one node to another;
// with place "n0", node 0 for all.
func homeNode(place string, i, n, k int) int {
	half := n / 2
	switch {
	case k <= 1 || place == "n0":
		return 0
	case i < half:
		return i % k
	case i < 2*half:
		return ((i-half)%k + 1) % k
	}
	return i % k // the odd one out, which sends nothing
}

// prefixWriter writes each line with a prefix. exec copies a child's
// output to it from one goroutine, in chunks that may split lines, so it
// holds a partial line back until its end arrives.
type prefixWriter struct {
	w       io.Writer
	prefix  []byte
	mu      sync.Mutex
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	var out []byte
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		out = append(append(out, p.prefix...), p.partial[:i+1]...)
		p.partial = p.partial[i+1:]
	}
	p.partial = append([]byte(nil), p.partial...) // do not pin a large chunk
	if len(out) > 0 {
		if _, err := p.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
