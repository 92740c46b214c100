package upstream_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wakeline/wakeline/upstream"
)

// Streams to one HTTP/2 origin share one TCP connection, through the
// default transport settings. (Streams started all at once may race to dial
// before the first connection is up; the transport then keeps one and drops
// the others, so what counts is the connections that carried requests.)
func TestClientHTTP2SharesConnection(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]int{}
	var h2 atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		}
		mu.Lock()
		remotes[r.RemoteAddr]++
		mu.Unlock()
		sse(w, "data: hi\n\n")
		hold(r)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes of dropped racing dials
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc := testTLSClient(t, srv)

	first := start(t, &upstream.Client{URL: srv.URL, HTTPClient: hc}, nil)
	first.waitEvents(1)
	const streams = 50
	for range streams - 1 {
		start(t, &upstream.Client{URL: srv.URL, HTTPClient: hc}, nil).waitEvents(1)
	}
	mu.Lock()
	defer mu.Unlock()
	if h2.Load() != streams || len(remotes) != 1 {
		t.Fatalf("%d of %d streams over HTTP/2, on %d connections", h2.Load(), streams, len(remotes))
	}
}

// Streams started all at once end up on few connections.
func TestClientHTTP2ConcurrentStart(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr]++
		mu.Unlock()
		sse(w, "data: hi\n\n")
		hold(r)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc := testTLSClient(t, srv)
	var hs []*harness
	for range 50 {
		hs = append(hs, start(t, &upstream.Client{URL: srv.URL, HTTPClient: hc}, nil))
	}
	for _, h := range hs {
		h.waitEvents(1)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 1 {
		t.Fatalf("50 streams started at once used %d connections", len(remotes))
	}
}

// testTLSClient is the default client configuration, trusting srv.
func testTLSClient(t *testing.T, srv *httptest.Server) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	hc := upstream.NewHTTPClient(&tls.Config{RootCAs: pool})
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// Over HTTP/1.1, reconnecting after a normal end reuses the connection.
func TestClientHTTP1ReusesConnection(t *testing.T) {
	var conns, n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 3 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sse(w, "data: x\n\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	h := start(t, &upstream.Client{URL: srv.URL}, nil)
	if err := h.join(); !errors.Is(err, upstream.ErrNoContent) {
		t.Fatalf("Run = %v", err)
	}
	if len(h.events) != 3 || conns.Load() != 1 {
		t.Fatalf("%d events over %d connections, want 3 over 1", len(h.events), conns.Load())
	}
}

// Several clients can share one HTTP client and run concurrently (-race).
func TestClientConcurrentRuns(t *testing.T) {
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, "id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
		hold(r)
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			h := start(t, &upstream.Client{URL: srv.URL}, nil)
			h.waitEvents(2)
			_ = h.stop()
		})
	}
	wg.Wait()
}

// A Gate bounds the connections being set up at once, and streams already
// open do not hold it.
func TestClientGate(t *testing.T) {
	const clients, slots = 6, 2
	arrived := make(chan struct{}, clients)
	release := make(chan struct{})
	var inflight, most atomic.Int32
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		inflight.Add(-1) // before the headers go out: the client leaves the gate after
		sse(w, "data: open\n\n")
		hold(r)
	})
	gate := upstream.NewGate(slots)
	var hs []*harness
	for range clients {
		hs = append(hs, start(t, &upstream.Client{URL: srv.URL, Gate: gate}, nil))
	}
	for range clients {
		<-arrived
		release <- struct{}{}
	}
	for _, h := range hs {
		h.waitEvents(1)
	}
	if m := most.Load(); m > slots {
		t.Fatalf("%d connections set up at once through a gate of %d", m, slots)
	}
}

// A Client waiting at the gate stops when its context ends.
func TestClientGateCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := origin(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		hold(r) // never answers: the slot stays taken
	})
	gate := upstream.NewGate(1)
	start(t, &upstream.Client{URL: srv.URL, Gate: gate}, nil)
	<-arrived
	h := start(t, &upstream.Client{URL: srv.URL, Gate: gate}, nil)
	h.waitState("connecting", func(s stateChange) bool { return s.state == upstream.Connecting })
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if names := h.stateNames(); len(names) != 2 || names[1] != "stopped" {
		t.Fatalf("states %v", names)
	}
}
