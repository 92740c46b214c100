package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wakeline/wakeline/upstream"
)

func TestStateString(t *testing.T) {
	for s, want := range map[upstream.State]string{
		upstream.Connecting: "connecting", upstream.Open: "open",
		upstream.BackingOff: "backing_off", upstream.Stopped: "stopped", upstream.State(42): "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
	}
}

func TestClientRejectsBadConfig(t *testing.T) {
	noop := func(context.Context, upstream.Event) error { return nil }
	for _, u := range []string{"", "ftp://example.com/x", "http://", "/relative", "http://a b/"} {
		c := &upstream.Client{URL: u}
		if err := c.Run(t.Context(), nil, noop); !errors.Is(err, upstream.ErrBadURL) {
			t.Errorf("URL %q: err = %v, want ErrBadURL", u, err)
		}
	}
	c := &upstream.Client{URL: "http://127.0.0.1:1/"}
	if err := c.Run(t.Context(), nil, nil); err == nil {
		t.Error("nil handle accepted")
	}
}

// The request carries the configured headers, the stream headers, and
// Last-Event-ID from resume (none when resume gives "").
func TestClientSendsHeaders(t *testing.T) {
	reqs := make(chan http.Header, 4)
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		reqs <- r.Header.Clone()
		if n.Add(1) == 1 {
			sse(w, "id: 5\ndata: a\n\n")
			return
		}
		sse(w)
		hold(r)
	})
	c := &upstream.Client{URL: srv.URL, Header: http.Header{
		"Authorization": {"Bearer origin-secret"},
		"Accept":        {"*/*"}, // overridden
		"X-Extra":       {"1", "2"},
	}}
	start(t, c, nil)
	first, second := <-reqs, <-reqs
	for i, h := range []http.Header{first, second} {
		if h.Get("Accept") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("request %d: Accept %q, Cache-Control %q", i, h.Get("Accept"), h.Get("Cache-Control"))
		}
		if h.Get("Authorization") != "Bearer origin-secret" || !slices.Equal(h.Values("X-Extra"), []string{"1", "2"}) {
			t.Errorf("request %d: configured headers missing: %v", i, h)
		}
	}
	if _, ok := first["Last-Event-Id"]; ok {
		t.Errorf("first request sent Last-Event-ID %q", first.Get("Last-Event-ID"))
	}
	if got := second.Get("Last-Event-ID"); got != "5" {
		t.Errorf("second request Last-Event-ID = %q, want 5", got)
	}
	if got := second.Get("Accept-Encoding"); got != "" {
		t.Errorf("Accept-Encoding %q: transparent gzip should be off", got)
	}
}

func TestClientFollowsRedirects(t *testing.T) {
	var final atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/events?v=2", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		final.Store(r.Header.Clone())
		sse(w, "data: moved\n\n")
		hold(r)
	})
	srv := origin(t, mux.ServeHTTP)
	c := &upstream.Client{URL: srv.URL + "/old", Header: http.Header{"Authorization": {"Bearer t"}}}
	h := start(t, c, nil)
	if evs := h.waitEvents(1); evs[0].Data != "moved" {
		t.Fatalf("event %#v", evs[0])
	}
	hdr := final.Load().(http.Header)
	if hdr.Get("Accept") != "text/event-stream" || hdr.Get("Authorization") != "Bearer t" {
		t.Fatalf("redirected request headers: %v", hdr)
	}
}

// An origin that drops the connection in the middle of an event: the
// partial event is discarded and fetched again after the last complete one.
func TestClientDropMidEvent(t *testing.T) {
	for _, how := range []string{"response ends", "connection cut"} {
		t.Run(how, func(t *testing.T) {
			lastIDs := make(chan string, 4)
			var n atomic.Int32
			srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
				lastIDs <- r.Header.Get("Last-Event-ID")
				const partial = "id: 1\ndata: one\n\nid: 2\ndata: tw"
				switch {
				case n.Add(1) > 1:
					sse(w, "id: 2\ndata: two\n\n")
					hold(r)
				case how == "response ends":
					sse(w, partial)
				default:
					cutMidChunk(t, w, partial)
				}
			})
			h := start(t, &upstream.Client{URL: srv.URL}, nil)
			evs := h.waitEvents(2)
			want := []upstream.Event{
				{Type: "message", Data: "one", ID: "1", HasID: true, LastEventID: "1"},
				{Type: "message", Data: "two", ID: "2", HasID: true, LastEventID: "2"},
			}
			if !slices.Equal(evs, want) {
				t.Fatalf("events %#v", evs)
			}
			if first, second := <-lastIDs, <-lastIDs; first != "" || second != "1" {
				t.Fatalf("Last-Event-ID %q then %q", first, second)
			}
		})
	}
}

// cutMidChunk sends a chunked stream by hand and closes the TCP connection
// inside a chunk, as a crashing origin does.
func cutMidChunk(t *testing.T, w http.ResponseWriter, body string) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	fmt.Fprintf(buf, "%x\r\n%s", len(body)+100, body) // the chunk promises more
	_ = buf.Flush()
}

// Garbage bytes (binary, NUL, ill-formed UTF-8) neither crash the client nor
// stop the events after them.
func TestClientGarbage(t *testing.T) {
	garbage := make([]byte, 64<<10)
	x := uint32(2463534242)
	for i := range garbage {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		garbage[i] = byte(x)
	}
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, string(garbage), "\n\nevent: end\ndata: after\n\n")
		hold(r)
	})
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	h.wait("the event after the garbage", func() bool {
		return slices.ContainsFunc(h.events, func(ev upstream.Event) bool { return ev.Type == "end" })
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.events {
		if strings.ContainsAny(ev.Data, "\r") || !isUTF8(ev.Data) || !isUTF8(ev.Type) {
			t.Fatalf("malformed event %#v", ev)
		}
	}
	if slices.ContainsFunc(h.states, func(s stateChange) bool { return s.state == upstream.BackingOff }) {
		t.Fatalf("garbage dropped the connection: %v", h.states)
	}
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "?") == s }

// Non-200 answers are retried on the slow path and logged once per streak,
// with the status and a URL without credentials or query.
func TestClientServerErrorLoggedOnce(t *testing.T) {
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 3 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		sse(w, "data: up\n\n")
		hold(r)
	})
	logs := &logRecorder{}
	host := strings.TrimPrefix(srv.URL, "http://")
	c := &upstream.Client{
		URL:    "http://user:hunter2@" + host + "/events?token=s3cret",
		Header: http.Header{"Authorization": {"Bearer origin-secret"}},
		Logger: slog.New(logs),
	}
	h := start(t, c, nil)
	h.waitEvents(1)
	err := h.waitState("backing off after 503", func(s stateChange) bool { return s.state == upstream.BackingOff })
	var re *upstream.ResponseError
	if !errors.Is(err, upstream.ErrBadStatus) || !errors.As(err, &re) || re.StatusCode != 503 {
		t.Fatalf("state error %v", err)
	}
	warns := logs.at(slog.LevelWarn)
	if len(warns) != 1 {
		t.Fatalf("%d warnings for one failure streak: %q", len(warns), warns)
	}
	wantURL := "url=http://" + host + "/events "
	if !strings.Contains(warns[0], "status=503") || !strings.Contains(warns[0], wantURL) {
		t.Fatalf("warning %q lacks status or safe %s", warns[0], wantURL)
	}
	if infos := logs.at(slog.LevelInfo); len(infos) != 1 || !strings.Contains(infos[0], "back") {
		t.Fatalf("recovery not logged once: %q", infos)
	}
	for _, secret := range []string{"hunter2", "s3cret", "origin-secret", "user"} {
		if strings.Contains(logs.all(), secret) || strings.Contains(fmt.Sprint(err), secret) {
			t.Fatalf("%q leaked into logs or errors:\n%s\n%v", secret, logs.all(), err)
		}
	}
}

// 204 tells the client to stop for good.
func TestClientNoContentStops(t *testing.T) {
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	if err := h.join(); !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("Run = %v, want ErrNoContent", err)
	}
	if got := h.stateNames(); !slices.Equal(got, []string{"connecting", "stopped"}) {
		t.Fatalf("states %v", got)
	}
	if err := h.states[len(h.states)-1].err; !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("stopped with %v", err)
	}
	if n.Load() != 1 {
		t.Fatalf("%d requests after 204", n.Load())
	}
}

func TestClientWrongContentType(t *testing.T) {
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "data: not an event\n\n")
		case 2:
			w.Header()["Content-Type"] = nil // no content type at all
			_, _ = io.WriteString(w, "data: nor this\n\n")
		default:
			w.Header().Set("Content-Type", "Text/Event-Stream; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "data: yes\n\n")
			w.(http.Flusher).Flush()
			hold(r)
		}
	})
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	if evs := h.waitEvents(1); len(evs) != 1 || evs[0].Data != "yes" {
		t.Fatalf("events %#v", evs)
	}
	err := h.waitState("content type failure", func(s stateChange) bool { return s.state == upstream.BackingOff })
	var re *upstream.ResponseError
	if !errors.Is(err, upstream.ErrBadContentType) || !errors.As(err, &re) || re.ContentType != "text/plain" {
		t.Fatalf("state error %v", err)
	}
}

// An origin that sends one byte per write, with CRLFs and a CR split from
// its LF, and a multi-byte character split across writes.
func TestClientSlowDrip(t *testing.T) {
	const stream = "id: 1\r\nevent: drip\r\ndata: a\r\ndata: é😀\r\n\r\n: beat\r\ndata: b\r\r"
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, strings.Split(stream, "")...)
		hold(r)
	})
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	evs := h.waitEvents(2)
	want := []upstream.Event{
		{Type: "drip", Data: "a\né😀", ID: "1", HasID: true, LastEventID: "1"},
		{Type: "message", Data: "b", LastEventID: "1"},
	}
	if !slices.Equal(evs, want) {
		t.Fatalf("events %#v", evs)
	}
}

func TestClientOversizedLine(t *testing.T) {
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			sse(w, "data: ok\n\ndata: "+strings.Repeat("x", 4096)+"\n\n")
			hold(r)
			return
		}
		sse(w, "data: fine\n\n")
		hold(r)
	})
	h := start(t, &upstream.Client{URL: srv.URL, MaxSize: 1024}, nil)
	evs := h.waitEvents(2)
	if evs[0].Data != "ok" || evs[1].Data != "fine" {
		t.Fatalf("events %#v", evs)
	}
	err := h.waitState("too large", func(s stateChange) bool { return s.state == upstream.BackingOff })
	if !errors.Is(err, upstream.ErrTooLarge) {
		t.Fatalf("state error %v", err)
	}
}

// eventLog is an origin with ten numbered events that sends at most three
// per connection and then ends the response; once all are sent it answers
// 204. When honour is false it ignores Last-Event-ID and starts over.
func eventLog(t *testing.T, honour bool, seen chan<- string) *httptest.Server {
	var sent atomic.Int32
	return origin(t, func(w http.ResponseWriter, r *http.Request) {
		last := r.Header.Get("Last-Event-ID")
		seen <- last
		from := 1
		if honour && last != "" {
			_, _ = fmt.Sscan(last, &from)
			from++
		}
		if from > 10 || sent.Load() >= 20 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var b strings.Builder
		for i := from; i < from+3 && i <= 10; i++ {
			fmt.Fprintf(&b, "id: %d\ndata: event %d\n\n", i, i)
			sent.Add(1)
		}
		sse(w, b.String())
	})
}

func TestClientResumeHonoured(t *testing.T) {
	seen := make(chan string, 32)
	srv := eventLog(t, true, seen)
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	if err := h.join(); !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("Run = %v", err)
	}
	var ids []string
	for _, ev := range h.events {
		ids = append(ids, ev.ID)
	}
	if want := strings.Fields("1 2 3 4 5 6 7 8 9 10"); !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want each once in order", ids)
	}
	close(seen)
	var sent []string
	for id := range seen {
		sent = append(sent, id)
	}
	if want := []string{"", "3", "6", "9", "10"}; !slices.Equal(sent, want) {
		t.Fatalf("Last-Event-ID sent %q, want %q", sent, want)
	}
}

// An origin that ignores Last-Event-ID replays from the start: the client
// still sends the header each time and delivers every event at least once;
// deduplication is the caller's business.
func TestClientResumeIgnored(t *testing.T) {
	seen := make(chan string, 32)
	srv := eventLog(t, false, seen)
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	h.waitEvents(9)
	h.stop()
	for i, ev := range h.events[:9] {
		if want := fmt.Sprint(i%3 + 1); ev.ID != want || ev.LastEventID != want {
			t.Fatalf("event %d: %#v", i, ev)
		}
	}
	if first, second, third := <-seen, <-seen, <-seen; first != "" || second != "3" || third != "3" {
		t.Fatalf("Last-Event-ID sent %q, %q, %q", first, second, third)
	}
}

// A handler that cannot store an event drops the connection; the resume id
// it gives next decides what is fetched again.
func TestClientHandlerError(t *testing.T) {
	seen := make(chan string, 32)
	srv := eventLog(t, true, seen)
	errFull := errors.New("store full")
	var refused atomic.Bool
	h := start(t, &upstream.Client{URL: srv.URL}, func(ev upstream.Event) error {
		if ev.ID == "2" && refused.CompareAndSwap(false, true) {
			return errFull
		}
		return nil
	})
	if err := h.join(); !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("Run = %v", err)
	}
	var ids []string
	for _, ev := range h.events {
		ids = append(ids, ev.ID)
	}
	if want := strings.Fields("1 2 3 4 5 6 7 8 9 10"); !slices.Equal(ids, want) {
		t.Fatalf("stored ids %v", ids)
	}
	err := h.waitState("handler failure", func(s stateChange) bool { return s.state == upstream.BackingOff })
	if !errors.Is(err, errFull) {
		t.Fatalf("state error %v", err)
	}
	if first, second := <-seen, <-seen; first != "" || second != "1" {
		t.Fatalf("Last-Event-ID %q then %q, want refetch after 1", first, second)
	}
}

// An id with a control character is legal in the stream but not in a Go
// header: the client reconnects without it rather than not at all.
func TestClientUnsendableLastEventID(t *testing.T) {
	seen := make(chan string, 4)
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		_, has := r.Header["Last-Event-Id"]
		seen <- fmt.Sprint(has)
		if n.Add(1) == 1 {
			sse(w, "id: a\x01b\ndata: x\n\n")
			return
		}
		sse(w)
		hold(r)
	})
	logs := &logRecorder{}
	start(t, &upstream.Client{URL: srv.URL, Logger: slog.New(logs)}, nil)
	if first, second := <-seen, <-seen; first != "false" || second != "false" {
		t.Fatalf("header present: %s, %s", first, second)
	}
	if warns := logs.at(slog.LevelWarn); len(warns) != 1 || !strings.Contains(warns[0], "cannot be sent") {
		t.Fatalf("warnings %q", warns)
	}
}

func TestClientStates(t *testing.T) {
	var n atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			sse(w, "data: x\n\n")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	if err := h.join(); !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("Run = %v", err)
	}
	want := []string{"connecting", "open", "backing_off", "connecting", "stopped"}
	if got := h.stateNames(); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if err := h.states[2].err; !errors.Is(err, io.EOF) {
		t.Fatalf("backing off after a normal end: %v", err)
	}
}

func TestClientCancel(t *testing.T) {
	unanswered := make(chan struct{})
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/open":
			sse(w)
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
			return
		case "/silent":
			close(unanswered)
		}
		hold(r)
	})
	for _, tc := range []struct {
		path  string
		until upstream.State
	}{
		{"/open", upstream.Open},
		{"/fail", upstream.BackingOff},
		{"/silent", upstream.Connecting},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := &upstream.Client{URL: srv.URL + tc.path, Backoff: upstream.Backoff{Initial: 1 << 40, Max: 1 << 41}}
			h := start(t, c, nil)
			h.waitState(tc.until.String(), func(s stateChange) bool { return s.state == tc.until })
			if tc.path == "/silent" {
				<-unanswered
			}
			if err := h.stop(); err != nil {
				t.Fatalf("Run = %v, want nil after cancel", err)
			}
			if names := h.stateNames(); names[len(names)-1] != "stopped" {
				t.Fatalf("states %v", names)
			}
		})
	}
}
