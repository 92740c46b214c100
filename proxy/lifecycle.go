package proxy

import (
	"context"
	"maps"

	"github.com/wakeline/wakeline/store"
)

// reindex moves a device from its old subscriptions to those of nd:
// streams it left lose it (and their origin connection with their last
// subscriber), per-device streams whose headers changed reconnect, new
// streams start.
func (g *Gateway) reindex(ctx context.Context, nd store.Device, old []store.Subscription) {
	var gone []string
	for _, o := range old {
		n, ok := findSub(nd, o.Upstream)
		if !ok || n.Stream != o.Stream || !maps.Equal(n.Headers, o.Headers) {
			gone = append(gone, o.Stream)
		}
	}
	g.mu.Lock()
	stop := g.unindexLocked(nd.ID, gone)
	g.mu.Unlock()
	waitRunners(ctx, stop)
	g.mu.Lock()
	g.indexLocked(nd)
	for _, s := range nd.Subscriptions {
		g.ensureRunnerLocked(s.Stream)
	}
	g.mu.Unlock()
}

// deleteDevice ends the device's streams and origin connections, then
// removes it and what only it used from the store.
func (g *Gateway) deleteDevice(ctx context.Context, d store.Device) error {
	streams := make([]string, 0, len(d.Subscriptions))
	for _, s := range d.Subscriptions {
		streams = append(streams, s.Stream)
	}
	g.mu.Lock()
	for _, cancel := range g.conns[d.ID] {
		cancel()
	}
	stop := g.unindexLocked(d.ID, streams)
	g.mu.Unlock()
	// Wait so that no origin event is appended to a log being deleted.
	waitRunners(ctx, stop)
	if err := g.st.DeleteDevice(ctx, d.ID); err != nil {
		return err
	}
	g.waker.forget(d.ID)
	g.cursors.forget(d.ID)
	g.announce(Notice{Device: d.ID})
	g.mu.Lock()
	for _, s := range streams {
		if g.subs[s] == nil && g.tails[s] != nil && g.tails[s].watchers() == 0 {
			delete(g.tails, s)
		}
	}
	g.mu.Unlock()
	return nil
}

// sleep takes the device's streams back: each cursor moves to the id the
// device last saw, a per-device origin that does not know the id is asked
// for what follows it, and pending events wake the device at once.
func (g *Gateway) sleep(ctx context.Context, d store.Device, req sleepRequest) error {
	for up, id := range req.LastEventIDs {
		if _, ok := findSub(d, up); !ok {
			return badRequest("last_event_ids."+up, "the device does not follow upstream %q", up)
		}
		if !validID(id) {
			return badRequest("last_event_ids."+up, "at most %d bytes, no NUL, CR or LF", maxIDLen)
		}
	}
	for up, id := range req.LastEventIDs {
		sub, _ := findSub(d, up)
		if err := g.handOver(ctx, d.ID, sub, id); err != nil {
			return err
		}
	}
	for _, s := range d.Subscriptions {
		k := cursorKey{d.ID, s.Upstream}
		if awake, err := g.presence.Awake(ctx, d.ID, s.Upstream); err == nil && !awake {
			g.wakeIfPending(k, s.Stream)
		}
	}
	return nil
}

func (g *Gateway) handOver(ctx context.Context, device string, sub store.Subscription, id string) error {
	if id == "" {
		return nil
	}
	pos, known, err := resolve(ctx, g.st, sub.Stream, id)
	if err != nil {
		return err
	}
	if known {
		g.cursors.set(device, sub.Upstream, pos)
		return g.st.SetCursor(ctx, device, sub.Upstream, pos)
	}
	if g.upstreams[sub.Upstream].IsShared() {
		return nil // a shared origin cannot be rewound; the cursor stands
	}
	// The device read this origin itself: reconnect from its id.
	g.mu.Lock()
	stop := g.unindexLocked(device, []string{sub.Stream})
	g.mu.Unlock()
	waitRunners(ctx, stop)
	err = g.restartFrom(ctx, device, sub, id)
	d, derr := g.st.Device(ctx, device)
	if derr == nil {
		g.mu.Lock()
		g.indexLocked(d)
		g.ensureRunnerLocked(sub.Stream)
		g.mu.Unlock()
	}
	return err
}

// restartFrom stores id as the resume id of a per-device stream and moves
// the device's cursor to the stream's end: what follows id comes anew.
func (g *Gateway) restartFrom(ctx context.Context, device string, sub store.Subscription, id string) error {
	if _, err := g.st.Append(ctx, sub.Stream, nil, id); err != nil {
		return err
	}
	_, last, err := g.st.Head(ctx, sub.Stream)
	if err != nil {
		return err
	}
	return g.st.SetCursor(ctx, device, sub.Upstream, last)
}
