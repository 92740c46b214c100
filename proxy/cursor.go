package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/wakeline/wakeline/store"
	"golang.org/x/sync/errgroup"
)

// cursorFlushEvery is how often delivered positions are written to the
// store. Between flushes a crash can make a device that resumes without a
// Last-Event-ID see up to this much again; one that sends its id never does.
const cursorFlushEvery = 250 * time.Millisecond

type cursorKey struct{ device, upstream string }

// cursors coalesces cursor updates of live device streams, so that an event
// delivered to 5,000 devices costs a few group commits, not 5,000.
type cursors struct {
	st  store.Delivery
	log *slog.Logger

	mu      sync.Mutex
	pending map[cursorKey]uint64
	// seen keeps the newest position handed to a device, flushed or not, so
	// pending counts stay right between flushes. Entries go with the device.
	seen map[cursorKey]uint64
}

func newCursors(st store.Delivery, log *slog.Logger) *cursors {
	return &cursors{st: st, log: log, pending: map[cursorKey]uint64{}, seen: map[cursorKey]uint64{}}
}

func (c *cursors) set(device, upstream string, pos uint64) {
	k := cursorKey{device, upstream}
	c.mu.Lock()
	if pos > c.seen[k] {
		c.seen[k] = pos
		c.pending[k] = pos
	}
	c.mu.Unlock()
}

func (c *cursors) requeue(k cursorKey, pos uint64) {
	c.mu.Lock()
	if pos > c.pending[k] {
		c.pending[k] = pos
	}
	c.mu.Unlock()
}

// delivered returns the newest position handed to the device in this process.
func (c *cursors) delivered(device, upstream string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[cursorKey{device, upstream}]
}

func (c *cursors) forget(device string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.seen {
		if k.device == device {
			delete(c.seen, k)
			delete(c.pending, k)
		}
	}
}

// flush writes every pending cursor, concurrently so the store can group them.
func (c *cursors) flush(ctx context.Context) error {
	c.mu.Lock()
	batch := c.pending
	c.pending = make(map[cursorKey]uint64, len(batch))
	c.mu.Unlock()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for k, pos := range batch {
		g.Go(func() error {
			err := c.st.SetCursor(ctx, k.device, k.upstream, pos)
			if err != nil && !isGone(err) {
				c.log.Warn("proxy: saving cursor", slog.String(keyDevice, k.device), slog.Any(keyErr, err))
				c.requeue(k, pos) // try again next time
			}
			return nil
		})
	}
	return g.Wait()
}

// run flushes periodically until ctx ends, then once more with flushCtx.
func (c *cursors) run(ctx, flushCtx context.Context) {
	t := time.NewTicker(cursorFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = c.flush(flushCtx)
			return
		case <-t.C:
			_ = c.flush(ctx)
		}
	}
}
