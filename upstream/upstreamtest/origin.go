// Package upstreamtest provides Origin, a real Server-Sent Events origin on
// loopback for tests, benchmarks and the demo: it keeps the history of what
// it emitted and serves it again after the Last-Event-ID a client sends.
package upstreamtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Event is one event the origin emits. An empty ID sends no id field.
type Event struct {
	ID   string
	Type string
	Data string
}

// Origin is an SSE origin over real HTTP on loopback.
type Origin struct {
	// URL is the event stream's address.
	URL string
	// IgnoreLastEventID makes the origin serve only new events, as origins
	// that cannot replay do.
	IgnoreLastEventID bool

	srv *httptest.Server

	mu       sync.Mutex
	history  []Event
	grew     chan struct{} // closed and replaced on every Emit
	requests []http.Header
	conns    map[int]context.CancelFunc
	next     int
	// connected is signalled on every new connection.
	connected chan http.Header
}

// New starts an origin; Close stops it.
func New() *Origin {
	o := &Origin{grew: make(chan struct{}), conns: map[int]context.CancelFunc{}, connected: make(chan http.Header, 64)}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.URL = o.srv.URL + "/events"
	return o
}

// Close ends every stream and stops the server.
func (o *Origin) Close() {
	o.DropAll()
	o.srv.Close()
}

// Emit appends an event to the history and sends it to every open stream.
func (o *Origin) Emit(ev Event) {
	o.mu.Lock()
	o.history = append(o.history, ev)
	close(o.grew)
	o.grew = make(chan struct{})
	o.mu.Unlock()
}

// Connected is signalled with the request headers of every new stream
// (buffered; tests read it to know a client is there).
func (o *Origin) Connected() <-chan http.Header { return o.connected }

// Requests returns the headers of every stream request so far.
func (o *Origin) Requests() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.requests...)
}

// Open returns the number of streams open now.
func (o *Origin) Open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.conns)
}

// DropAll ends every open stream, as a network failure would.
func (o *Origin) DropAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, cancel := range o.conns {
		cancel()
	}
}

func (o *Origin) serve(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	o.mu.Lock()
	id := o.next
	o.next++
	o.conns[id] = cancel
	o.requests = append(o.requests, r.Header.Clone())
	from := len(o.history)
	if last := r.Header.Get("Last-Event-ID"); last != "" && !o.IgnoreLastEventID {
		from = o.after(last)
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.conns, id)
		o.mu.Unlock()
	}()
	select {
	case o.connected <- r.Header.Clone():
	default:
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		o.mu.Lock()
		evs, grew := o.history[from:], o.grew
		o.mu.Unlock()
		for _, ev := range evs {
			if _, err := fmt.Fprint(w, format(ev)); err != nil {
				return
			}
		}
		from += len(evs)
		if rc.Flush() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-grew:
		}
	}
}

// after returns the history index after the last event with id, or the
// whole history when id is unknown. Called with o.mu held.
func (o *Origin) after(id string) int {
	for i := len(o.history) - 1; i >= 0; i-- {
		if o.history[i].ID == id {
			return i + 1
		}
	}
	return 0
}

func format(ev Event) string {
	var b strings.Builder
	if ev.ID != "" {
		b.WriteString("id: " + ev.ID + "\n")
	}
	if ev.Type != "" {
		b.WriteString("event: " + ev.Type + "\n")
	}
	for _, line := range strings.Split(ev.Data, "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	return b.String()
}
