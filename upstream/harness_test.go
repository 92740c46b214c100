package upstream_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/upstream"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastBackoff keeps reconnect waits in tests to a millisecond or two.
var fastBackoff = upstream.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}

// guard bounds every wait in these tests; it is a failure, never a pause.
const guard = 20 * time.Second

type stateChange struct {
	state upstream.State
	err   error
}

// harness runs a Client the way the proxy does: resume returns the last
// event id it stored, handle stores events. Waits are on its change
// channel, signalled by the client's own callbacks.
type harness struct {
	t       *testing.T
	cancel  context.CancelFunc
	done    chan error
	changed chan struct{}

	mu     sync.Mutex
	events []upstream.Event
	states []stateChange
	lastID string
	fail   func(upstream.Event) error // if set, may refuse an event

	stopOnce sync.Once
	result   error
}

func start(t *testing.T, c *upstream.Client, fail func(upstream.Event) error) *harness {
	t.Helper()
	h := &harness{t: t, done: make(chan error, 1), changed: make(chan struct{}, 1), fail: fail}
	c.OnState = h.onState
	if c.Backoff == (upstream.Backoff{}) {
		c.Backoff = fastBackoff
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx, h.resume, h.handle) }()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) resume() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastID
}

func (h *harness) handle(_ context.Context, ev upstream.Event) error {
	h.mu.Lock()
	defer h.notify()
	defer h.mu.Unlock()
	if h.fail != nil {
		if err := h.fail(ev); err != nil {
			return err
		}
	}
	h.events = append(h.events, ev)
	h.lastID = ev.LastEventID
	return nil
}

func (h *harness) onState(s upstream.State, err error) {
	h.mu.Lock()
	h.states = append(h.states, stateChange{s, err})
	h.mu.Unlock()
	h.notify()
}

func (h *harness) notify() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// wait blocks until cond, called with the lock held, is true.
func (h *harness) wait(what string, cond func() bool) {
	h.t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-h.changed:
		case <-timer.C:
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Fatalf("timed out waiting for %s; events %#v; states %v", what, h.events, h.states)
		}
	}
}

func (h *harness) waitEvents(n int) []upstream.Event {
	h.t.Helper()
	h.wait(fmt.Sprintf("%d events", n), func() bool { return len(h.events) >= n })
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]upstream.Event(nil), h.events...)
}

// waitState waits for a state change matching ok and returns its error.
func (h *harness) waitState(what string, ok func(stateChange) bool) error {
	h.t.Helper()
	var found error
	h.wait(what, func() bool {
		for _, s := range h.states {
			if ok(s) {
				found = s.err
				return true
			}
		}
		return false
	})
	return found
}

// stop cancels Run and returns what it returned.
func (h *harness) stop() error {
	h.t.Helper()
	h.stopOnce.Do(func() {
		h.cancel()
		h.result = h.join()
	})
	return h.result
}

// join waits for Run to return on its own.
func (h *harness) join() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for a later stop
		return err
	case <-time.After(guard):
		h.t.Fatal("Run did not return")
		return nil
	}
}

func (h *harness) stateNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for _, s := range h.states {
		names = append(names, s.state.String())
	}
	return names
}

// origin starts an HTTP/1.1 test origin, closed when the test ends (after
// the clients, whose cleanups run first).
func origin(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// sse answers a stream and writes chunks, flushing each.
func sse(w http.ResponseWriter, chunks ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for _, c := range chunks {
		_, _ = io.WriteString(w, c)
		w.(http.Flusher).Flush()
	}
}

// hold keeps a response open until the client goes away.
func hold(r *http.Request) { <-r.Context().Done() }

// logRecorder is a slog.Handler keeping every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// at returns the records of a level, each as "message k=v k=v".
func (l *logRecorder) at(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level != level {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}

func (l *logRecorder) all() string {
	var b strings.Builder
	for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		for _, s := range l.at(lv) {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}
