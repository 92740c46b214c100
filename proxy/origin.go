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
	g.lead(ctx, stream, func(held context.Context) bool {
		handle := func(ctx context.Context, ev upstream.Event) error {
			if err := g.accept(ctx, stream, up, ev); err != nil {
				return err
			}
			r.last = ev.LastEventID
			return nil
		}
		err := c.Run(held, func() string { return r.resume(held) }, handle)
		switch {
		case errors.Is(err, upstream.ErrNoContent):
			g.log.Info("proxy: origin asked the gateway to stop (204)", slog.String(keyStream, stream))
			return true
		case err != nil && held.Err() == nil:
			// Run gives up only on what retrying cannot mend (a bad URL).
			g.log.Error("proxy: origin connection ended", slog.String(keyStream, stream), slog.Any(keyErr, err))
			return true
		}
		return false
	})
}

// accept stores an origin event before anything else happens, then wakes
// the readers of its stream and the devices that sleep. An error makes the
// client reconnect from the resume id last stored, so nothing is lost.
func (g *Gateway) accept(ctx context.Context, stream, up string, ev upstream.Event) error {
	now := time.Now()
	evs, err := g.st.Append(ctx, stream, []store.Event{{
		ID: ev.ID, HasID: ev.HasID, Type: ev.Type, Data: ev.Data, Received: now,
	}}, ev.LastEventID)
	g.metrics.appendLatency.Observe(time.Since(now).Seconds())
	if err != nil {
		return err
	}
	g.metrics.received.WithLabelValues(up).Inc()
	g.published(stream, evs, now)
	g.announce(Notice{Stream: stream})
	return nil
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
