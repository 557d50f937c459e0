package session

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefGate(t *testing.T) {
	var g refGate
	g.init()

	// One key: holders never overlap.
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				leave := g.enter("alice/r1")
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				inside.Add(-1)
				leave()
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d overlapping holders of one key", overlaps.Load())
	}

	// Another key does not wait for a held one.
	leave := g.enter("alice/r1")
	defer leave()
	done := make(chan struct{})
	go func() {
		g.enter("alice/r2")()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a different key waited")
	}
}
