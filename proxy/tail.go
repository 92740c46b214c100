package proxy

import (
	"sync"

	"github.com/wakeline/wakeline/store"
)

// tailSize is how many recent events of a stream are kept in memory so that
// live delivery to many devices does not read the store once per device.
const tailSize = 1024

// tail is the recent end of one stream log and the set of device streams
// waiting for it to grow. The store stays the truth: readers ask by
// position, and a position older than the ring falls back to the store, so
// the seam between replay and live has neither gap nor duplicate.
type tail struct {
	mu     sync.RWMutex
	ring   []store.Event // ring[(i)%tailSize], oldest at start
	start  int
	n      int
	last   uint64 // newest position in the ring, 0 when empty
	waiter map[chan struct{}]struct{}
}

func newTail() *tail {
	return &tail{waiter: make(map[chan struct{}]struct{})}
}

// add records appended events and wakes every waiter.
func (t *tail) add(evs []store.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ev := range evs {
		if t.n > 0 && ev.Pos != t.last+1 {
			t.n, t.start = 0, 0 // a hole (another writer): restart the ring
		}
		if t.ring == nil {
			t.ring = make([]store.Event, tailSize)
		}
		if t.n == tailSize {
			t.start = (t.start + 1) % tailSize
			t.n--
		}
		t.ring[(t.start+t.n)%tailSize] = ev
		t.n++
		t.last = ev.Pos
	}
	t.notifyLocked()
}

// notify wakes every waiter for events this process did not add (another
// replica appended them): the ring no longer covers the newest positions.
func (t *tail) notify() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n, t.start = 0, 0
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
func (t *tail) after(pos uint64, limit int) (evs []store.Event, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 {
		return nil, false
	}
	oldest := t.ring[t.start].Pos
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
