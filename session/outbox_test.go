package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type sink struct {
	mu      sync.Mutex
	got     []string
	block   chan struct{} // when set, writes wait for it
	entered chan struct{} // when set, receives once per write call
	fail    error
	errors  int
}

func (s *sink) write(frames [][]byte) error {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for _, f := range frames {
		s.got = append(s.got, string(f))
	}
	return nil
}

func (s *sink) frames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func newTestOutbox(s *sink, frames int) *outbox {
	return &outbox{write: s.write, onError: func(error) { s.mu.Lock(); s.errors++; s.mu.Unlock() },
		maxFrames: frames, maxBytes: 1 << 20}
}

func TestOutboxOrderAndClose(t *testing.T) {
	s := &sink{}
	o := newTestOutbox(s, 1000)
	for i := range 500 {
		if !o.push([]byte{byte(i)}) {
			t.Fatal("push refused")
		}
	}
	done := make(chan struct{})
	o.close([]byte("last"), func() { close(done) })
	<-done
	got := s.frames()
	if len(got) != 501 || got[500] != "last" {
		t.Fatalf("got %d frames", len(got))
	}
	for i := range 500 {
		if got[i] != string([]byte{byte(i)}) {
			t.Fatalf("frame %d out of order", i)
		}
	}
	if o.push([]byte("x")) {
		t.Fatal("push after close accepted")
	}
}

func TestOutboxBoundedAndWaits(t *testing.T) {
	s := &sink{block: make(chan struct{}), entered: make(chan struct{}, 10)}
	o := newTestOutbox(s, 2)
	o.push([]byte("a"))
	<-s.entered // the writer holds "a" and blocks
	if !o.push([]byte("b")) || !o.push([]byte("c")) {
		t.Fatal("push within the bound refused")
	}
	if o.push([]byte("d")) {
		t.Fatal("push beyond the bound accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.pushWait(ctx, []byte("d")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pushWait on a full queue: %v", err)
	}
	waited := make(chan error)
	go func() { waited <- o.pushWait(context.Background(), []byte("d")) }()
	close(s.block)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	o.close(nil, func() { close(done) })
	<-done
	if got := s.frames(); len(got) != 4 || got[3] != "d" {
		t.Fatalf("got %q", got)
	}
}

func TestOutboxWriteError(t *testing.T) {
	s := &sink{fail: errors.New("broken pipe")}
	o := newTestOutbox(s, 10)
	o.push([]byte("a"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := s.errors
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("write error not reported")
		}
		time.Sleep(time.Millisecond)
	}
	if o.push([]byte("b")) {
		t.Fatal("push after a failed write accepted")
	}
}

func TestOutboxConcurrentPushers(t *testing.T) {
	s := &sink{}
	o := newTestOutbox(s, 1<<20)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if err := o.pushWait(context.Background(), []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	done := make(chan struct{})
	o.close(nil, func() { close(done) })
	<-done
	if n := len(s.frames()); n != 8000 {
		t.Fatalf("wrote %d frames, want 8000", n)
	}
}

func TestOutboxPushOwnWritesInline(t *testing.T) {
	s := &sink{}
	o := newTestOutbox(s, 10)
	if err := o.pushOwn(context.Background(), []byte("ack")); err != nil {
		t.Fatal(err)
	}
	// Written by the caller itself: no writer goroutine to wait for.
	if got := s.frames(); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("got %q", got)
	}
}
