package upstream_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakeline/wakeline/upstream"
)

// An origin that goes silent (no bytes, not even comments) is dropped after
// ReadTimeout and reconnected, both while the response headers are awaited
// and in the middle of a stream. The timeout is real but short; nothing in
// the test sleeps.
func TestClientStall(t *testing.T) {
	for _, tc := range []struct{ name, path string }{
		{"silent stream", "/stream"},
		{"no response headers", "/headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lastIDs := make(chan string, 8)
			var n atomic.Int32
			srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
				lastIDs <- r.Header.Get("Last-Event-ID")
				if r.URL.Path == "/stream" || n.Add(1) > 1 {
					sse(w, "id: 1\ndata: a\n\n")
				}
				hold(r)
			})
			c := &upstream.Client{URL: srv.URL + tc.path, ReadTimeout: 50 * time.Millisecond}
			h := start(t, c, nil)
			err := h.waitState("stall", func(s stateChange) bool { return s.state == upstream.BackingOff })
			if !errors.Is(err, upstream.ErrStalled) {
				t.Fatalf("state error %v, want ErrStalled", err)
			}
			if first, second := <-lastIDs, <-lastIDs; first != "" || (tc.path == "/stream" && second != "1") {
				t.Fatalf("Last-Event-ID %q then %q", first, second)
			}
			h.waitEvents(1)
		})
	}
}

// A stream that keeps sending comments is alive, however slowly events come.
func TestClientCommentsKeepStreamAlive(t *testing.T) {
	beat := make(chan struct{})
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w)
		for range 20 {
			select {
			case <-beat:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write([]byte(": beat\n\n"))
			w.(http.Flusher).Flush()
		}
		_, _ = w.Write([]byte("data: done\n\n"))
		w.(http.Flusher).Flush()
		hold(r)
	})
	// Generous timeout: each beat is sent as soon as the previous event is
	// read, so only a real stall could trip it.
	c := &upstream.Client{URL: srv.URL, ReadTimeout: 5 * time.Second}
	h := start(t, c, nil)
	h.waitState("open", func(s stateChange) bool { return s.state == upstream.Open })
	for range 20 {
		beat <- struct{}{}
	}
	h.waitEvents(1)
	for _, name := range h.stateNames() {
		if name == "backing_off" {
			t.Fatalf("states %v", h.stateNames())
		}
	}
}
