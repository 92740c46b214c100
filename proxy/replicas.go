package proxy

import (
	"context"
	"log/slog"

	"github.com/wakeline/wakeline/store"
)

// listen applies the news other replicas send: a stream grew (its readers
// here catch up from the store), a device changed (the index follows).
func (g *Gateway) listen(ctx context.Context) {
	err := g.bus.Listen(ctx, func(n Notice) {
		if n.Stream != "" {
			g.mu.Lock()
			t := g.tails[n.Stream]
			g.mu.Unlock()
			if t != nil {
				t.notify()
			}
		}
		if n.Device != "" {
			g.refreshDevice(ctx, n.Device)
		}
	})
	if err != nil && ctx.Err() == nil {
		g.log.Error("proxy: listening to other replicas", slog.Any(keyErr, err))
	}
}

// announce tells the other replicas; a lost notice only delays them.
func (g *Gateway) announce(n Notice) {
	if err := g.bus.Announce(g.bg, n); err != nil && g.bg.Err() == nil {
		g.log.Warn("proxy: announcing to other replicas", slog.Any(keyErr, err))
	}
}

// refreshDevice re-reads a device another replica changed and moves it in
// the index: connections for streams it left stop, new ones start.
func (g *Gateway) refreshDevice(ctx context.Context, id string) {
	d, err := g.st.Device(ctx, id)
	if err != nil && !isGone(err) {
		g.log.Warn("proxy: reading a changed device", slog.String(keyDevice, id), slog.Any(keyErr, err))
		return
	}
	g.mu.Lock()
	var old []string
	for stream, devs := range g.subs {
		if _, ok := devs[id]; ok {
			old = append(old, stream)
		}
	}
	stop := g.unindexLocked(id, old)
	g.mu.Unlock()
	waitRunners(ctx, stop)
	if isGone(err) {
		g.mu.Lock()
		for _, cancel := range g.conns[id] {
			cancel()
		}
		g.mu.Unlock()
		g.waker.forget(id)
		g.cursors.forget(id)
		return
	}
	g.mu.Lock()
	g.indexLocked(d)
	for _, s := range d.Subscriptions {
		g.ensureRunnerLocked(s.Stream)
	}
	g.mu.Unlock()
}

// lead holds stream's origin connection whenever this replica holds its
// lease: run is called with a context that ends when the lease is lost.
// It returns when ctx ends or run reports that the origin wants no more.
func (g *Gateway) lead(ctx context.Context, stream string, run func(context.Context) (stop bool)) {
	for {
		held, release, err := g.leader.Lead(ctx, stream)
		if err != nil {
			return
		}
		stop := run(held)
		release()
		if stop || ctx.Err() != nil {
			return
		}
	}
}

// resumer remembers the last resume id stored, so that a store that cannot
// be read does not make the origin connection start over from "now".
type resumer struct {
	st     store.Log
	stream string
	log    *slog.Logger
	last   string // only touched by the origin client's goroutine
}

func (r *resumer) resume(ctx context.Context) string {
	id, _, err := r.st.Head(ctx, r.stream)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("proxy: reading resume id, using the last one known", slog.String(keyStream, r.stream), slog.Any(keyErr, err))
		}
		return r.last
	}
	r.last = id
	return id
}
