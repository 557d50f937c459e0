package session

import (
	"context"
	"errors"
	"sync"
)

// errOutboxClosed is returned when pushing to a closed outbox.
var errOutboxClosed = errors.New("session: connection is closing")

// outbox is a connection's bounded queue of outgoing frames. A writer
// goroutine exists only while frames are waiting, so an idle connection
// costs no goroutine and no buffer here.
type outbox struct {
	write     func([][]byte) error // writes frames in order; one caller at a time
	onError   func(error)          // called once if write fails
	maxFrames int
	maxBytes  int

	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	bytes   int
	running bool
	closing bool   // no more pushes; after draining, run finish
	finish  func() // runs once, after the last frame is written
	space   chan struct{}
}

// push queues f without waiting. It reports false when the queue is full
// or closing; the caller decides what a full queue means.
func (o *outbox) push(f []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || len(o.frames) >= o.maxFrames || o.bytes+len(f) > o.maxBytes {
		return false
	}
	if o.appendLocked(f) {
		go o.run()
	}
	return true
}

// pushWait queues f, waiting for room until ctx is done.
func (o *outbox) pushWait(ctx context.Context, f []byte) error {
	return o.pushWaitRun(ctx, f, false)
}

// pushOwn is pushWait for the connection's own goroutine: when no writer
// is running it writes the queue itself instead of starting one, saving a
// goroutine hand-off on every reply.
func (o *outbox) pushOwn(ctx context.Context, f []byte) error {
	return o.pushWaitRun(ctx, f, true)
}

func (o *outbox) pushWaitRun(ctx context.Context, f []byte, inline bool) error {
	for {
		o.mu.Lock()
		if o.closing {
			o.mu.Unlock()
			return errOutboxClosed
		}
		// An empty queue always takes the frame, so one frame larger than
		// maxBytes cannot wait forever.
		if len(o.frames) == 0 || (len(o.frames) < o.maxFrames && o.bytes+len(f) <= o.maxBytes) {
			start := o.appendLocked(f)
			o.mu.Unlock()
			switch {
			case start && inline:
				o.run()
			case start:
				go o.run()
			}
			return nil
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendLocked queues f and reports whether the caller must run the
// writer, which it then owns.
func (o *outbox) appendLocked(f []byte) (start bool) {
	o.frames = append(o.frames, f)
	o.bytes += len(f)
	if o.running {
		return false
	}
	o.running = true
	return true
}

// close stops further pushes, queues last (if any) and runs finish once
// the queue has been written.
func (o *outbox) close(last []byte, finish func()) {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return
	}
	o.closing = true
	o.finish = finish
	o.wakeLocked()
	if last != nil {
		o.frames = append(o.frames, last)
	}
	if o.running {
		o.mu.Unlock()
		return
	}
	if len(o.frames) > 0 {
		o.running = true
		o.mu.Unlock()
		go o.run()
		return
	}
	o.mu.Unlock()
	finish()
}

// abort drops whatever is queued and stops further pushes. It does not
// run finish; the caller is closing the connection itself.
func (o *outbox) abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing = true
	o.finish = nil
	clear(o.frames)
	o.frames = o.frames[:0]
	o.bytes = 0
	o.wakeLocked()
}

func (o *outbox) wakeLocked() {
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
}

func (o *outbox) run() {
	for {
		o.mu.Lock()
		if len(o.frames) == 0 {
			o.running = false
			var finish func()
			if o.closing {
				finish, o.finish = o.finish, nil
			}
			o.mu.Unlock()
			if finish != nil {
				finish()
			}
			return
		}
		batch := o.frames
		o.frames, o.spare = o.spare[:0], nil
		o.bytes = 0
		o.wakeLocked()
		o.mu.Unlock()

		err := o.write(batch)
		clear(batch)
		o.mu.Lock()
		o.spare = batch[:0]
		o.mu.Unlock()
		if err != nil {
			o.abort()
			o.mu.Lock()
			o.running = false
			o.mu.Unlock()
			o.onError(err)
			return
		}
	}
}
