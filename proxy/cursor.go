package proxy

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/wakeline/wakeline/store"
	"golang.org/x/sync/errgroup"
)

// cursorFlushEvery is how often delivered positions are written to the
// store. Between flushes a crash can make a device that resumes without a
// Last-Event-ID see up to this much again; one that sends its id never does.
const cursorFlushEvery = time.Second

// cursorShards spreads the cursor maps over several locks: thousands of
// device streams set their cursor at the same instant after each event.
const cursorShards = 64

type cursorKey struct{ device, upstream string }

type cursorShard struct {
	mu      sync.Mutex
	pending map[cursorKey]uint64
	// seen keeps the newest position handed to a device, flushed or not, so
	// pending counts stay right between flushes. Entries go with the device.
	seen map[cursorKey]uint64
}

// cursors coalesces cursor updates of live device streams, so that an event
// delivered to 5,000 devices costs a few group commits, not 5,000.
type cursors struct {
	st     store.Delivery
	log    *slog.Logger
	seed   maphash.Seed
	shards [cursorShards]cursorShard
}

func newCursors(st store.Delivery, log *slog.Logger) *cursors {
	c := &cursors{st: st, log: log, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].pending = map[cursorKey]uint64{}
		c.shards[i].seen = map[cursorKey]uint64{}
	}
	return c
}

func (c *cursors) shard(device string) *cursorShard {
	return &c.shards[maphash.String(c.seed, device)%cursorShards]
}

func (c *cursors) set(device, upstream string, pos uint64) {
	k := cursorKey{device, upstream}
	sh := c.shard(device)
	sh.mu.Lock()
	if pos > sh.seen[k] {
		sh.seen[k] = pos
		sh.pending[k] = pos
	}
	sh.mu.Unlock()
}

func (c *cursors) requeue(k cursorKey, pos uint64) {
	sh := c.shard(k.device)
	sh.mu.Lock()
	if pos > sh.pending[k] {
		sh.pending[k] = pos
	}
	sh.mu.Unlock()
}

// delivered returns the newest position handed to the device in this process.
func (c *cursors) delivered(device, upstream string) uint64 {
	sh := c.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.seen[cursorKey{device, upstream}]
}

// cursor is the store's cursor and pending count for the device, moved on
// by what this process delivered and has not flushed yet.
func (c *cursors) cursor(ctx context.Context, device, upstream string) (uint64, int64, error) {
	pos, pending, err := c.st.Cursor(ctx, device, upstream)
	if err != nil {
		return pos, pending, err
	}
	if mem := c.delivered(device, upstream); mem > pos {
		pending = max(0, pending-int64(mem-pos))
		pos = mem
	}
	return pos, pending, nil
}

func (c *cursors) forget(device string) {
	sh := c.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for k := range sh.seen {
		if k.device == device {
			delete(sh.seen, k)
			delete(sh.pending, k)
		}
	}
}

// take empties the pending maps.
func (c *cursors) take() map[cursorKey]uint64 {
	batch := map[cursorKey]uint64{}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, v := range sh.pending {
			batch[k] = v
		}
		clear(sh.pending)
		sh.mu.Unlock()
	}
	return batch
}

// cursorBatch is how many cursors one SetCursors call carries.
const cursorBatch = 1000

// flush writes every pending cursor: in batches when the store can
// (store.CursorBatcher), else one by one, concurrently so that the store
// can group them.
func (c *cursors) flush(ctx context.Context) error {
	batch := c.take()
	if b, ok := c.st.(store.CursorBatcher); ok {
		return c.flushBatches(ctx, b, batch)
	}
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

func (c *cursors) flushBatches(ctx context.Context, b store.CursorBatcher, batch map[cursorKey]uint64) error {
	updates := make([]store.CursorUpdate, 0, min(len(batch), cursorBatch))
	write := func() {
		if err := b.SetCursors(ctx, updates); err != nil {
			c.log.Warn("proxy: saving cursors", slog.Int("count", len(updates)), slog.Any(keyErr, err))
			for _, u := range updates {
				c.requeue(cursorKey{u.Device, u.Upstream}, u.Pos) // try again next time
			}
		}
		updates = updates[:0]
	}
	for k, pos := range batch {
		updates = append(updates, store.CursorUpdate{Device: k.device, Upstream: k.upstream, Pos: pos})
		if len(updates) == cursorBatch {
			write()
		}
	}
	if len(updates) > 0 {
		write()
	}
	return nil
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
