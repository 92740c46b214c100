package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream"
)

// sharedStream names the log of a shared upstream; deviceStream that of a
// device's own connection to a per-device upstream.
func sharedStream(up string) string         { return "u/" + up }
func deviceStream(device, up string) string { return "d/" + device + "/" + up }

func streamFor(u config.Upstream, device string) string {
	if u.IsShared() {
		return sharedStream(u.Name)
	}
	return deviceStream(device, u.Name)
}

// runner is one origin connection, owned by the gateway.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// indexLocked adds a device's subscriptions to the stream index.
func (g *Gateway) indexLocked(d store.Device) {
	for _, s := range d.Subscriptions {
		if g.subs[s.Stream] == nil {
			g.subs[s.Stream] = map[string]subEntry{}
		}
		g.subs[s.Stream][d.ID] = subEntry{upstream: s.Upstream, headers: s.Headers}
	}
}

// unindexLocked removes a device from the index and returns the runners of
// streams that lost their last subscriber; the caller stops them after
// unlocking.
func (g *Gateway) unindexLocked(device string, streams []string) []*runner {
	var stop []*runner
	for _, stream := range streams {
		delete(g.subs[stream], device)
		if len(g.subs[stream]) > 0 {
			continue
		}
		delete(g.subs, stream)
		if r := g.runners[stream]; r != nil {
			r.cancel()
			stop = append(stop, r)
			delete(g.runners, stream)
		}
	}
	return stop
}

func waitRunners(ctx context.Context, rs []*runner) {
	for _, r := range rs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
}

// ensureRunnerLocked starts the origin connection of stream if it has a
// subscriber and none runs yet.
func (g *Gateway) ensureRunnerLocked(stream string) {
	if g.runners[stream] != nil || len(g.subs[stream]) == 0 || g.closing.Load() || !g.started.Load() {
		return
	}
	var (
		e      subEntry
		device string
	)
	for device, e = range g.subs[stream] {
		break
	}
	u, ok := g.upstreams[e.upstream]
	if !ok {
		g.log.Warn("proxy: a device follows an upstream no longer configured",
			slog.String(keyUpstream, e.upstream), slog.String(keyDevice, device))
		return
	}
	header := http.Header{}
	for k, v := range u.Headers {
		header.Set(k, v)
	}
	if !u.IsShared() {
		for k, v := range e.headers {
			header.Set(k, v)
		}
	}
	ctx, cancel := context.WithCancel(g.bg)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	g.runners[stream] = r
	c := &upstream.Client{
		URL: u.URL, Header: header, HTTPClient: g.origin, Logger: g.log.With(slog.String(keyUpstream, u.Name)),
		Backoff: upstream.Backoff{Initial: u.Retry.Initial, Max: u.Retry.Max},
		MaxSize: g.cfg.Stream.MaxEventSize,
		Gate:    g.gates[u.Name],
	}
	gauge := &originGauge{m: g.metrics}
	c.OnState = gauge.set
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(r.done)
		defer gauge.end()
		g.runOrigin(ctx, c, stream, u.Name)
	}()
}

func (g *Gateway) runOrigin(ctx context.Context, c *upstream.Client, stream, up string) {
	r := &resumer{st: g.st, stream: stream, log: g.log}
	retry := g.upstreams[up].Retry
	g.lead(ctx, stream, func(held context.Context) bool {
		wait := retry.Initial
		for {
			stop, stored := g.session(held, c, r, stream, up)
			if stop || held.Err() != nil {
				return stop
			}
			// The store failed: wait before asking the origin again.
			if stored {
				wait = retry.Initial
			}
			select {
			case <-held.Done():
				return false
			case <-time.After(wait):
			}
			wait = min(2*wait, retry.Max)
		}
	})
}

// session reads the origin through one appender until the lease ends, the
// origin says stop (stop), or the store fails: the session then ends at
// once, even if no further event comes, so that the next one resumes from
// what was stored. stored says whether anything was.
func (g *Gateway) session(held context.Context, c *upstream.Client, r *resumer, stream, up string) (stop, stored bool) {
	sctx, cancel := context.WithCancel(held)
	a := newAppender(g, stream, up, cancel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.run(sctx)
	}()
	defer func() {
		cancel()
		<-done
		stored = a.wrote // run has returned: no race
	}()
	resume := func() string {
		if last, ok := a.flush(sctx); ok {
			r.last = last
		}
		return r.resume(sctx)
	}
	err := c.Run(sctx, resume, a.handle)
	switch {
	case errors.Is(err, upstream.ErrNoContent):
		g.log.Info("proxy: origin asked the gateway to stop (204)", slog.String(keyStream, stream))
		return true, false
	case err != nil && sctx.Err() == nil:
		// Run gives up only on what retrying cannot mend (a bad URL).
		g.log.Error("proxy: origin connection ended", slog.String(keyStream, stream), slog.Any(keyErr, err))
		return true, false
	}
	return false, false
}

// published hands stored events to live readers and asks for wakes of the
// subscribers that have no stream open.
func (g *Gateway) published(stream string, evs []store.Event, received time.Time) {
	if len(evs) == 0 {
		return
	}
	g.tailFor(stream).add(evs)
	g.mu.Lock()
	var sleeping []cursorKey
	for device, e := range g.subs[stream] {
		k := cursorKey{device, e.upstream}
		if g.awake[k] == 0 {
			sleeping = append(sleeping, k)
		}
	}
	g.mu.Unlock()
	for _, k := range sleeping {
		g.waker.request(wakeReq{key: k, stream: stream, received: received})
	}
}

func (g *Gateway) tailFor(stream string) *tail {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tails[stream]
	if t == nil {
		t = newTail()
		g.tails[stream] = t
	}
	return t
}

// originGauge keeps one origin connection counted under its current state.
type originGauge struct {
	m    *metrics
	mu   sync.Mutex
	last string
}

func (o *originGauge) set(s upstream.State, _ error) { o.move(s.String()) }

// end uncounts a connection whose runner has stopped.
func (o *originGauge) end() { o.move("") }

func (o *originGauge) move(state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last != "" {
		o.m.originState.WithLabelValues(o.last).Dec()
	}
	if state != "" {
		o.m.originState.WithLabelValues(state).Inc()
	}
	o.last = state
}
