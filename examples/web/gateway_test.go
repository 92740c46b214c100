package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

const regToken = proxytest.RegistrationToken

// gateway is wakeline in process, as `wakeline demo` serves it (the API
// and the page at /demo/), behind a simulated network, with a real origin
// and a push service that decrypts what it gets.
type gateway struct {
	t      *testing.T
	url    string // the front: what the browser opens
	origin *upstreamtest.Origin
	push   *pushtest.Server
	net    *network
	client *http.Client // the test's own REST calls
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{t: t, origin: upstreamtest.New(), push: pushtest.New(), client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(g.origin.Close)
	t.Cleanup(g.push.Close)
	cfg := proxytest.Config(g.origin.URL)
	// The page's EventSource comes back this soon after losing its stream.
	cfg.Stream.Retry = 200 * time.Millisecond
	pg, err := proxytest.Start(t.Context(), proxytest.Options{Config: cfg, Path: filepath.Join(t.TempDir(), "wakeline.db")})
	if err != nil {
		t.Fatal(err)
	}
	gw := pg.Gateway
	g.net = newNetwork(wakeline.WebHandler(gw.Handler()))
	front := httptest.NewUnstartedServer(g.net)
	front.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	front.Start()
	g.url = front.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Close(ctx); err != nil {
			t.Errorf("closing the gateway: %v", err)
		}
		front.Close()
		if err := pg.Close(ctx); err != nil {
			t.Errorf("closing the store: %v", err)
		}
		g.client.CloseIdleConnections()
	})
	return g
}

// deviceState is the part of GET /v1/devices/{id} the test reads.
type deviceState struct {
	Subscriptions []struct {
		Pending   int64 `json:"pending"`
		Connected bool  `json:"connected"`
	} `json:"subscriptions"`
}

// waitState polls the device's state until cond holds; the gateway records
// a stream's end and new events asynchronously.
func (g *gateway) waitState(ctx context.Context, id, token, what string, cond func(deviceState) bool) {
	g.t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/v1/devices/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := g.client.Do(req)
		if err != nil {
			g.t.Fatalf("waiting for %s: %v", what, err)
		}
		var s deviceState
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(s.Subscriptions) != 1 {
			g.t.Fatalf("waiting for %s: GET device: %d %v %+v", what, resp.StatusCode, err, s)
		}
		if cond(s) {
			return
		}
		select {
		case <-ctx.Done():
			g.t.Fatalf("timed out waiting for %s; last state %+v", what, s)
		case <-tick.C:
		}
	}
}

// wake returns the next wake message the push service decrypted.
func (g *gateway) wake(ctx context.Context) pushtest.Delivery {
	g.t.Helper()
	select {
	case d := <-g.push.Received():
		if d.Err != nil {
			g.t.Fatalf("the push service refused a wake: %v", d.Err)
		}
		return d
	case <-ctx.Done():
		g.t.Fatal("no wake message reached the push service")
	}
	return pushtest.Delivery{}
}

type connKey struct{}

// streamRequest is a device stream request let through to the gateway.
type streamRequest struct {
	lastEventID string // the Last-Event-ID header
	query       string
}

// sleepRequest is a POST .../sleep and the gateway's answer.
type sleepRequest struct {
	body   string
	status int
}

// network is the browser's network to the gateway. cut drops the open
// device streams (their TCP connections close mid-response) and refuses
// new ones the same way until restore: a phone losing its network.
type network struct {
	next    http.Handler
	streams chan streamRequest
	sleeps  chan sleepRequest

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{} // open device streams
}

func newNetwork(next http.Handler) *network {
	return &network{next: next, streams: make(chan streamRequest, 64), sleeps: make(chan sleepRequest, 8), conns: map[net.Conn]struct{}{}}
}

func (n *network) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.Contains(r.URL.Path, "/streams/"):
		n.serveStream(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/sleep"):
		n.serveSleep(w, r)
	default:
		n.next.ServeHTTP(w, r)
	}
}

func (n *network) serveStream(w http.ResponseWriter, r *http.Request) {
	conn := r.Context().Value(connKey{}).(net.Conn)
	n.mu.Lock()
	if n.down {
		n.mu.Unlock()
		// No answer at all: the browser sees a network error and retries.
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	n.conns[conn] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.conns, conn)
		n.mu.Unlock()
	}()
	select {
	case n.streams <- streamRequest{lastEventID: r.Header.Get("Last-Event-ID"), query: r.URL.RawQuery}:
	default:
	}
	n.next.ServeHTTP(w, r)
}

func (n *network) serveSleep(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = io.NopCloser(bytes.NewReader(body))
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	n.next.ServeHTTP(sw, r)
	select {
	case n.sleeps <- sleepRequest{body: string(body), status: sw.status}:
	default:
	}
}

// cut closes every open device stream and refuses new ones until restore.
func (n *network) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = true
	for c := range n.conns {
		c.Close()
	}
}

func (n *network) restore() {
	n.mu.Lock()
	n.down = false
	n.mu.Unlock()
}

// drainStreams forgets the stream requests so far.
func drainStreams(n *network) {
	for {
		select {
		case <-n.streams:
		default:
			return
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
