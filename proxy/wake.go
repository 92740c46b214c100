package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

const (
	// wakeWorkers claim wakes in the store concurrently, so a burst for many
	// sleeping devices shares group commits.
	wakeWorkers = 64
	// maxWakeBacklog bounds the wake requests waiting for a worker; past it a
	// request is dropped and logged: the next event for that device asks again.
	maxWakeBacklog = 100_000
)

// wakeReq asks for a wake of one device for one upstream.
type wakeReq struct {
	key      cursorKey
	stream   string
	received time.Time
}

// waker decides which sleeping devices get a wake message. A local map of
// outstanding wakes keeps the per-event cost of a device that was already
// woken to one map lookup; the store's ClaimWake makes the decision atomic
// across replicas.
type waker struct {
	st       store.Store
	cursors  *cursors
	presence Presence
	queue    *push.Queue
	rewake   time.Duration
	log      *slog.Logger
	metrics  *metrics

	mu          sync.Mutex
	outstanding map[cursorKey]time.Time
	backlog     map[cursorKey]wakeReq
	order       []cursorKey
	ready       chan struct{}
}

func newWaker(st store.Store, c *cursors, q *push.Queue, p Presence, rewake time.Duration, log *slog.Logger, m *metrics) *waker {
	return &waker{
		st: st, cursors: c, presence: p, queue: q, rewake: rewake, log: log, metrics: m,
		outstanding: map[cursorKey]time.Time{},
		backlog:     map[cursorKey]wakeReq{},
		ready:       make(chan struct{}, 1),
	}
}

// request asks for a wake; it never blocks the origin's reader.
func (w *waker) request(r wakeReq) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if since, ok := w.outstanding[r.key]; ok && time.Since(since) < w.rewake {
		return
	}
	if old, ok := w.backlog[r.key]; ok {
		r.received = old.received // wake latency counts from the first event
		w.backlog[r.key] = r
		return
	}
	if len(w.backlog) >= maxWakeBacklog {
		w.log.Warn("proxy: wake backlog full, request dropped", slog.String(keyDevice, r.key.device))
		return
	}
	w.backlog[r.key] = r
	w.order = append(w.order, r.key)
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// clear ends the outstanding wake of a device that connected.
func (w *waker) clear(ctx context.Context, k cursorKey) {
	w.mu.Lock()
	delete(w.outstanding, k)
	w.mu.Unlock()
	if err := w.st.ClearWake(ctx, k.device, k.upstream); err != nil && !isGone(err) {
		w.log.Warn("proxy: clearing wake", slog.String(keyDevice, k.device), slog.Any(keyErr, err))
	}
}

func (w *waker) forget(device string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.outstanding {
		if k.device == device {
			delete(w.outstanding, k)
		}
	}
}

func (w *waker) next(ctx context.Context) (wakeReq, bool) {
	for {
		w.mu.Lock()
		if len(w.order) > 0 {
			k := w.order[0]
			w.order = w.order[1:]
			r := w.backlog[k]
			delete(w.backlog, k)
			// Taken: later events for k wait for this wake's outcome
			// instead of queueing a second one (wake clears it on failure).
			w.outstanding[k] = time.Now()
			if len(w.order) > 0 {
				select {
				case w.ready <- struct{}{}:
				default:
				}
			}
			w.mu.Unlock()
			return r, true
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return wakeReq{}, false
		case <-w.ready:
		}
	}
}

// run is one wake worker; it returns when ctx ends.
func (w *waker) run(ctx context.Context) {
	for {
		r, ok := w.next(ctx)
		if !ok {
			return
		}
		if err := w.wake(ctx, r); err != nil && !isGone(err) && ctx.Err() == nil {
			w.log.Warn("proxy: wake", slog.String(keyDevice, r.key.device), slog.String(keyUpstream, r.key.upstream), slog.Any(keyErr, err))
		}
	}
}

func (w *waker) wake(ctx context.Context, r wakeReq) error {
	sent, err := w.try(ctx, r)
	if !sent {
		w.mu.Lock()
		delete(w.outstanding, r.key)
		w.mu.Unlock()
	}
	return err
}

// try sends the wake unless the device is gone, awake, or already woken
// (by this replica or another); sent reports whether a wake is outstanding.
func (w *waker) try(ctx context.Context, r wakeReq) (sent bool, err error) {
	d, err := w.st.Device(ctx, r.key.device)
	if err != nil {
		return false, err
	}
	if d.PushState.Status == store.PushGone {
		return true, nil // nothing will be sent again: keep it marked
	}
	// Awake on this or another replica: the event reaches it live.
	if awake, err := w.presence.Awake(ctx, r.key.device, r.key.upstream); err != nil || awake {
		return false, err
	}
	// Nothing pending any more (the device read it before leaving): no wake.
	_, pending, err := w.cursors.cursor(ctx, r.key.device, r.key.upstream)
	if err != nil || pending == 0 {
		return false, err
	}
	now := time.Now()
	ok, err := w.st.ClaimWake(ctx, r.key.device, r.key.upstream, now, w.rewake)
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil // another replica's wake is outstanding
	}
	w.mu.Lock()
	w.outstanding[r.key] = now
	w.mu.Unlock()
	// The newest id at claim time: events that came after the request
	// folded into this one wake.
	_, last, err := w.st.Head(ctx, r.stream)
	if err != nil {
		return true, err
	}
	job := push.Job{
		Device: r.key.device, Upstream: r.key.upstream, Sub: d.Push, Enqueued: r.received,
		Msg: push.Message{Type: wakeType, Device: r.key.device, Upstream: r.key.upstream, Pending: pending, LastEventID: idAt(ctx, w.st, r.stream, last)},
	}
	if err := w.queue.Enqueue(job); err != nil {
		w.metrics.wakes.WithLabelValues("dropped").Inc()
		return true, err
	}
	return true, nil
}

// result records what the push service answered.
func (w *waker) result(ctx context.Context, res push.Result) {
	outcome := "ok"
	switch {
	case res.Err == nil:
	case errors.Is(res.Err, push.ErrGone):
		outcome = "gone"
	default:
		outcome = "failed"
	}
	w.metrics.wakes.WithLabelValues(outcome).Inc()
	if !res.Job.Enqueued.IsZero() && !res.Answered.IsZero() {
		w.metrics.wakeLatency.Observe(res.Answered.Sub(res.Job.Enqueued).Seconds())
	}
	_, err := w.st.UpdateDevice(ctx, res.Job.Device, func(d *store.Device) error {
		if d.Push.Endpoint != res.Job.Sub.Endpoint {
			return nil // the subscription was replaced meanwhile
		}
		switch outcome {
		case "ok":
			d.PushState = store.PushState{Status: store.PushOK, LastPushAt: res.Answered}
		case "gone":
			d.PushState.Status, d.PushState.LastError = store.PushGone, "push subscription gone"
		default:
			d.PushState.Status, d.PushState.LastError = store.PushFailing, shortReason(res.Err)
		}
		return nil
	})
	if err != nil && !isGone(err) {
		w.log.Warn("proxy: recording push state", slog.String(keyDevice, res.Job.Device), slog.Any(keyErr, err))
	}
}
