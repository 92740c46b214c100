package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/wakeline/wakeline/upstream"
)

const (
	// defaultPageSize bounds each read of a log (stream.send_buffer).
	defaultPageSize = 256
	// defaultSlowDeviceTimeout ends the stream of a device that cannot take
	// a page of events within it: a device too far behind resumes by
	// Last-Event-ID instead of holding memory or a worker.
	defaultSlowDeviceTimeout = 10 * time.Second
	// gapType is the event that tells a device its resume point is gone.
	gapType = "wakeline.gap"
)

// deviceStream is one open device event stream.
type devStream struct {
	g      *Gateway
	key    cursorKey
	stream string
	tail   *tail
	w      http.ResponseWriter
	rc     *http.ResponseController
	enc    *upstream.Encoder
	after  uint64
	live   bool // past the first catch-up: events count as live deliveries
}

func (g *Gateway) serveStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	d, aerr := g.authDevice(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	sub, ok := findSub(d, r.PathValue("upstream"))
	if !ok {
		writeError(w, errNoStream)
		return
	}
	key := cursorKey{d.ID, sub.Upstream}
	asked := r.Header.Get("Last-Event-ID")
	if asked == "" {
		asked = r.URL.Query().Get("last_event_id")
	}
	start, gap, err := g.startPos(r.Context(), key, sub.Stream, asked)
	if err != nil {
		g.internal(w, "resolving resume point", err)
		return
	}
	if asked != "" && !gap {
		// The device says it has everything up to there: if it leaves
		// without reading more, nothing before it counts as pending.
		g.cursors.set(key.device, key.upstream, start)
	}
	ctx, done := g.openConn(r.Context(), d.ID)
	defer done()
	tl := g.tailFor(sub.Stream)
	notify, unwatch := tl.watch()
	defer unwatch()
	defer g.enter(ctx, key, sub.Stream)()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &devStream{g: g, key: key, stream: sub.Stream, tail: tl, w: w, rc: http.NewResponseController(w), enc: upstream.NewEncoder(w), after: start}
	if err := s.run(ctx, notify, asked, gap); err != nil && ctx.Err() == nil {
		g.log.Debug("proxy: device stream ended", slog.String(keyDevice, d.ID), slog.Any(keyErr, err))
	}
}

// startPos finds where to replay from: the asked id, else the cursor.
func (g *Gateway) startPos(ctx context.Context, key cursorKey, stream, asked string) (uint64, bool, error) {
	if asked != "" {
		pos, known, err := resolve(ctx, g.st, stream, asked)
		return pos, !known, err
	}
	pos, _, err := g.cursors.cursor(ctx, key.device, key.upstream)
	return pos, false, err
}

func (s *devStream) run(ctx context.Context, notify <-chan struct{}, asked string, gap bool) error {
	if err := s.enc.Retry(s.g.retryHint()); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil { // the device learns at once that it is connected
		return err
	}
	if err := s.catchUp(ctx, asked, gap); err != nil {
		return err
	}
	s.live = true // from here on, reads may come from the in-memory tail
	heartbeat := time.NewTicker(s.g.cfg.Stream.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			if s.g.streams.Err() != nil { // shutting down: tell the device when to come back
				_ = s.enc.Retry(s.g.retryHint())
				_ = s.rc.Flush()
			}
			return ctx.Err()
		case <-heartbeat.C:
			if err := s.deadline(); err != nil {
				return err
			}
			if err := s.enc.Comment("heartbeat"); err != nil {
				return err
			}
			if err := s.rc.Flush(); err != nil {
				return err
			}
		case <-notify:
			if err := s.catchUp(ctx, "", false); err != nil {
				return err
			}
		}
	}
}

// catchUp writes every event after s.after, page by page, until none is left.
func (s *devStream) catchUp(ctx context.Context, asked string, gap bool) error {
	first := true
	for {
		var tl *tail
		if s.live {
			tl = s.tail
		}
		evs, readGap, err := s.g.read(ctx, s.stream, tl, s.after, s.g.pageSize())
		if err != nil {
			return err
		}
		if first && (gap || readGap) {
			if err := s.writeGap(asked, evs); err != nil {
				return err
			}
		}
		first = false
		if len(evs) == 0 {
			return s.rc.Flush() // a gap event alone must reach the device now
		}
		if err := s.writeEvents(evs); err != nil {
			return err
		}
	}
}

func (s *devStream) writeGap(asked string, evs []wireEvent) error {
	oldest := ""
	if len(evs) > 0 {
		oldest = evs[0].id
	}
	data, _ := json.Marshal(map[string]string{"last_event_id": asked, "oldest_event_id": oldest})
	if err := s.deadline(); err != nil {
		return err
	}
	return s.enc.Encode(upstream.Event{Type: gapType, Data: string(data)})
}

func (s *devStream) writeEvents(evs []wireEvent) error {
	for _, ev := range evs {
		// A device is slow when it cannot take one event in time, however
		// long a replay page is.
		if err := s.deadline(); err != nil {
			return err
		}
		if _, err := s.w.Write(ev.wire); err != nil {
			return s.slow(err)
		}
	}
	if err := s.rc.Flush(); err != nil {
		return s.slow(err)
	}
	s.after = evs[len(evs)-1].pos
	s.g.cursors.set(s.key.device, s.key.upstream, s.after)
	if s.live {
		s.g.metrics.live.Add(float64(len(evs)))
	} else {
		s.g.metrics.replayed.Add(float64(len(evs)))
	}
	return nil
}

func (s *devStream) deadline() error {
	err := s.rc.SetWriteDeadline(time.Now().Add(s.g.slowAfter))
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}

func (s *devStream) slow(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		s.g.metrics.slowDropped.Inc()
		s.g.log.Info("proxy: device too slow, stream ended", slog.String(keyDevice, s.key.device))
	}
	return err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// read serves live readers from their stream's in-memory tail (nil for a
// replay) when it covers pos, else reads the store. A replay always reads the store, which alone knows
// what retention removed.
func (g *Gateway) read(ctx context.Context, stream string, tl *tail, after uint64, limit int) ([]wireEvent, bool, error) {
	if tl != nil {
		if evs, ok := tl.after(after, limit); ok {
			return evs, false, nil
		}
	}
	p, err := g.st.Read(ctx, stream, after, limit)
	return encodeEvents(p.Events), p.Gap, err
}

// openConn registers a stream so that deleting the device or shutting down
// ends it.
func (g *Gateway) openConn(parent context.Context, device string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(g.streams, cancel)
	id := new(int)
	g.mu.Lock()
	if g.conns[device] == nil {
		g.conns[device] = map[*int]context.CancelFunc{}
	}
	g.conns[device][id] = cancel
	g.mu.Unlock()
	g.metrics.streamsOpen.Inc()
	return ctx, func() {
		stop()
		cancel()
		g.mu.Lock()
		delete(g.conns[device], id)
		if len(g.conns[device]) == 0 {
			delete(g.conns, device)
		}
		g.mu.Unlock()
		g.metrics.streamsOpen.Dec()
	}
}

// enter marks the device awake for an upstream, here and for every
// replica, and ends its outstanding wake. The returned func undoes it.
func (g *Gateway) enter(ctx context.Context, k cursorKey, stream string) func() {
	g.mu.Lock()
	g.awake[k]++
	g.mu.Unlock()
	leave, err := g.presence.Enter(ctx, k.device, k.upstream)
	if err != nil {
		g.log.Warn("proxy: marking device awake", slog.String(keyDevice, k.device), slog.Any(keyErr, err))
		leave = func() {}
	}
	g.waker.clear(ctx, k)
	return func() {
		leave()
		g.mu.Lock()
		if g.awake[k]--; g.awake[k] <= 0 {
			delete(g.awake, k)
		}
		g.mu.Unlock()
		// The device connected and left: a new wake may go (INTERFACE.md).
		// Clearing here too, not only on entering, mends a clear that a
		// store outage made fail while the device was connected.
		g.waker.clear(g.bg, k)
		// Events stored while the device was leaving wake it at once.
		if awake, err := g.presence.Awake(g.bg, k.device, k.upstream); err == nil && !awake {
			g.wakeIfPending(k, stream)
		}
	}
}

func (g *Gateway) wakeIfPending(k cursorKey, stream string) {
	if g.closing.Load() {
		return
	}
	ctx := g.bg
	pos, _, err := g.st.Cursor(ctx, k.device, k.upstream)
	if err != nil {
		return // deleted meanwhile
	}
	pos = max(pos, g.cursors.delivered(k.device, k.upstream))
	_, last, err := g.st.Head(ctx, stream)
	if err != nil || last <= pos {
		return
	}
	// Latency counts from the newest pending event's arrival.
	received := time.Now()
	if p, err := g.st.Read(ctx, stream, last-1, 1); err == nil && len(p.Events) == 1 {
		received = p.Events[0].Received
	}
	g.waker.request(wakeReq{key: k, stream: stream, received: received})
}

// retryHint is the reconnection delay the gateway tells device streams.
func (g *Gateway) retryHint() time.Duration {
	if g.cfg.Stream.Retry > 0 {
		return g.cfg.Stream.Retry
	}
	return 5 * time.Second
}

// pageSize is how many events one read of a log returns at most.
func (g *Gateway) pageSize() int {
	if n := g.cfg.Stream.SendBuffer; n > 0 {
		return min(n, 4096)
	}
	return defaultPageSize
}
