package upstream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// watchdog cancels a connection when no byte has arrived for timeout. It
// uses a timer callback rather than a goroutine per stream, because an idle
// stream's goroutine is the costliest thing it holds; reads only store a
// timestamp, and the callback re-arms itself for the time left.
type watchdog struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc
	start   time.Time
	last    atomic.Int64 // time since start of the last activity
	busy    atomic.Bool  // the handler is running: not the origin's fault

	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
}

// newWatchdog arms a watchdog; timeout <= 0 returns nil, which is inert.
func newWatchdog(timeout time.Duration, cancel context.CancelCauseFunc) *watchdog {
	if timeout <= 0 {
		return nil
	}
	w := &watchdog{timeout: timeout, cancel: cancel, start: time.Now()}
	w.mu.Lock()
	w.timer = time.AfterFunc(timeout, w.fire)
	w.mu.Unlock()
	return w
}

func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	idle := time.Since(w.start) - time.Duration(w.last.Load())
	if w.busy.Load() {
		idle = 0
	}
	if idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		return
	}
	w.cancel(ErrStalled)
}

func (w *watchdog) touch() {
	if w != nil {
		w.last.Store(int64(time.Since(w.start)))
	}
}

// pause marks the handler as running; resume ends that and counts as
// activity, so the origin gets a full timeout after a slow handler.
func (w *watchdog) pause() {
	if w != nil {
		w.busy.Store(true)
	}
}

func (w *watchdog) resume() {
	if w != nil {
		w.touch()
		w.busy.Store(false)
	}
}

// stop disarms the watchdog; after it returns the watchdog cancels nothing.
func (w *watchdog) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
}
