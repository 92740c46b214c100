package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream"
)

// maxAppendBatch bounds the events one Append carries, and so the events
// an origin reader may hand over before it waits for the store.
const maxAppendBatch = 256

// errAppendFailed is what the origin reader sees after a failed Append: it
// reconnects, and the resume id last stored decides what is fetched again.
var errAppendFailed = errors.New("proxy: storing origin events failed")

// appender stores one origin stream's events. While one Append commits,
// the events that arrive queue for the next, so that a busy origin is not
// held to one durable commit per event (each costs milliseconds).
//
// The origin reader calls handle; the client's resume calls flush, which
// returns once everything handed over is stored or dropped, so that the
// resume id it then reads covers every event the reader saw: none is
// fetched twice, none is lost.
type appender struct {
	g          *Gateway
	stream, up string
	in         chan appendItem
	// fail ends the origin session: after a failed Append the reader must
	// reconnect even if the origin sends nothing more.
	fail  context.CancelFunc
	wrote bool // an Append succeeded; only run's goroutine writes it

	mu     sync.Mutex
	failed error  // set by a failed Append until the next flush
	last   string // resume id of the last stored batch
}

type appendItem struct {
	ev       upstream.Event
	received time.Time
	flushed  chan struct{} // a flush marker when not nil
}

func newAppender(g *Gateway, stream, up string, fail context.CancelFunc) *appender {
	return &appender{g: g, stream: stream, up: up, fail: fail, in: make(chan appendItem, maxAppendBatch)}
}

// handle hands an event over; it blocks only while maxAppendBatch events
// wait for the store.
func (a *appender) handle(ctx context.Context, ev upstream.Event) error {
	a.mu.Lock()
	err := a.failed
	a.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case a.in <- appendItem{ev: ev, received: time.Now()}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush waits until every event handed over is stored or dropped, clears a
// failure, and returns the resume id of the last stored batch ("" if none
// was stored in this session).
func (a *appender) flush(ctx context.Context) (string, bool) {
	done := make(chan struct{})
	select {
	case a.in <- appendItem{flushed: done}:
	case <-ctx.Done():
		return "", false
	}
	select {
	case <-done:
	case <-ctx.Done():
		return "", false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failed = nil
	return a.last, a.last != ""
}

// run stores batches until ctx ends.
func (a *appender) run(ctx context.Context) {
	batch := make([]appendItem, 0, maxAppendBatch)
	for {
		var first appendItem
		select {
		case <-ctx.Done():
			return
		case first = <-a.in:
		}
		batch = append(batch[:0], first)
		// Take what queued meanwhile, up to a flush marker.
		for len(batch) < maxAppendBatch && batch[len(batch)-1].flushed == nil {
			select {
			case it := <-a.in:
				batch = append(batch, it)
				continue
			default:
			}
			break
		}
		a.store(ctx, batch)
	}
}

// store appends the events of batch and then releases its flush marker.
func (a *appender) store(ctx context.Context, batch []appendItem) {
	var marker chan struct{}
	if last := batch[len(batch)-1]; last.flushed != nil {
		marker = last.flushed
		batch = batch[:len(batch)-1]
	}
	if len(batch) > 0 {
		a.mu.Lock()
		failed := a.failed != nil
		a.mu.Unlock()
		if !failed { // after a failure, drop: the reader reconnects and refetches
			a.append(ctx, batch)
		}
	}
	if marker != nil {
		close(marker)
	}
}

func (a *appender) append(ctx context.Context, batch []appendItem) {
	evs := make([]store.Event, len(batch))
	for i, it := range batch {
		evs[i] = store.Event{ID: it.ev.ID, HasID: it.ev.HasID, Type: it.ev.Type, Data: it.ev.Data, Received: it.received}
	}
	resume := batch[len(batch)-1].ev.LastEventID
	g := a.g
	start := time.Now()
	stored, err := g.st.Append(ctx, a.stream, evs, resume)
	g.metrics.appendLatency.Observe(time.Since(start).Seconds())
	a.mu.Lock()
	if err != nil {
		a.failed = errors.Join(errAppendFailed, err)
	} else {
		a.last = resume
	}
	a.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("proxy: storing origin events failed; reconnecting from the last stored id",
				slog.String(keyStream, a.stream), slog.Any(keyErr, err))
		}
		a.fail()
		return
	}
	a.wrote = true
	g.metrics.received.WithLabelValues(a.up).Add(float64(len(stored)))
	g.published(a.stream, stored, batch[0].received)
	g.announce(Notice{Stream: a.stream})
}
