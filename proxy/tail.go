package proxy

import (
	"bytes"
	"sync"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream"
)

const (
	// tailSize is how many recent events of a stream are kept in memory so
	// that live delivery to many devices neither reads the store nor
	// encodes the event once per device.
	tailSize = 1024
	// tailBytes bounds the memory of one stream's tail.
	tailBytes = 4 << 20
)

// wireEvent is an event as a device stream writes it.
type wireEvent struct {
	pos  uint64
	id   string // the id the device sees
	wire []byte // id, event and data fields, and the blank line
}

// encodeEvent renders ev for a device: its origin id or the gateway's own.
func encodeEvent(ev store.Event) wireEvent {
	var b bytes.Buffer
	id := eventID(ev)
	_ = upstream.NewEncoder(&b).Encode(upstream.Event{Type: ev.Type, Data: ev.Data, ID: id, HasID: true})
	return wireEvent{pos: ev.Pos, id: id, wire: b.Bytes()}
}

func encodeEvents(evs []store.Event) []wireEvent {
	out := make([]wireEvent, len(evs))
	for i, ev := range evs {
		out[i] = encodeEvent(ev)
	}
	return out
}

// tail is the recent end of one stream log, encoded, and the set of device
// streams waiting for it to grow. The store stays the truth: readers ask by
// position, and a position older than the ring falls back to the store, so
// the seam between replay and live has neither gap nor duplicate.
type tail struct {
	mu     sync.RWMutex
	ring   []wireEvent // oldest at start
	start  int
	n      int
	bytes  int
	last   uint64 // newest position in the ring, 0 when empty
	waiter map[chan struct{}]struct{}
}

func newTail() *tail {
	return &tail{waiter: make(map[chan struct{}]struct{})}
}

// add records appended events and wakes every waiter.
func (t *tail) add(evs []store.Event) {
	wire := encodeEvents(evs) // outside the lock
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range wire {
		if t.n > 0 && w.pos != t.last+1 {
			t.reset() // a hole (another writer): restart the ring
		}
		if t.ring == nil {
			t.ring = make([]wireEvent, tailSize)
		}
		for t.n > 0 && (t.n == tailSize || t.bytes+len(w.wire) > tailBytes) {
			t.bytes -= len(t.ring[t.start].wire)
			t.ring[t.start] = wireEvent{}
			t.start = (t.start + 1) % tailSize
			t.n--
		}
		t.ring[(t.start+t.n)%tailSize] = w
		t.n++
		t.bytes += len(w.wire)
		t.last = w.pos
	}
	t.notifyLocked()
}

func (t *tail) reset() {
	clear(t.ring)
	t.n, t.start, t.bytes = 0, 0, 0
}

// notify wakes every waiter for events this process did not add (another
// replica appended them): the ring no longer covers the newest positions.
func (t *tail) notify() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reset()
	t.notifyLocked()
}

func (t *tail) notifyLocked() {
	for c := range t.waiter {
		select {
		case c <- struct{}{}:
		default: // already signalled; the reader will catch up by position
		}
	}
}

// after returns up to limit events after pos from the ring; ok is false
// when the ring does not cover pos and the caller must read the store.
func (t *tail) after(pos uint64, limit int) (evs []wireEvent, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 {
		return nil, false
	}
	oldest := t.ring[t.start].pos
	if pos+1 < oldest || pos > t.last {
		return nil, false
	}
	for i := int(pos + 1 - oldest); i < t.n && len(evs) < limit; i++ {
		evs = append(evs, t.ring[(t.start+i)%tailSize])
	}
	return evs, true
}

// watch returns a channel signalled when the stream grows, and a func to
// stop watching.
func (t *tail) watch() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	t.mu.Lock()
	t.waiter[c] = struct{}{}
	t.mu.Unlock()
	return c, func() {
		t.mu.Lock()
		delete(t.waiter, c)
		t.mu.Unlock()
	}
}

func (t *tail) watchers() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.waiter)
}
