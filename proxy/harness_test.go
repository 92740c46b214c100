package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

const regToken = proxytest.RegistrationToken

// env is a gateway over real HTTP on loopback with a bolt file, a real
// origin and a push service that decrypts and checks VAPID.
type env struct {
	t      testing.TB
	ctx    context.Context // bounds every wait of the test
	origin *upstreamtest.Origin
	push   *pushtest.Server
	cfg    config.Config
	path   string
	// slowAfter is the gateway's SlowDeviceTimeout; set before start.
	slowAfter time.Duration
	// wrap, if set before start, wraps the store the gateway uses.
	wrap  func(store.Store) store.Store
	g     *proxytest.Gateway
	st    store.Store // the bolt store under the gateway
	gw    *proxy.Gateway
	front *httptest.Server
}

func newEnv(t testing.TB, mutate func(*config.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, origin: upstreamtest.New(), push: pushtest.New()}
	t.Cleanup(e.origin.Close)
	t.Cleanup(e.push.Close)
	e.path = filepath.Join(t.TempDir(), "wakeline.db")
	e.cfg = proxytest.Config(e.origin.URL)
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.start()
	return e
}

// start opens the store and the gateway; stop closes them. A test may
// stop and start again on the same file.
func (e *env) start() {
	t := e.t
	t.Helper()
	g, err := proxytest.Start(t.Context(), proxytest.Options{
		Config: e.cfg, Path: e.path, Wrap: e.wrap,
		Proxy: proxy.Options{SlowDeviceTimeout: e.slowAfter},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.g, e.st, e.gw = g, g.Store, g.Gateway
	e.front = httptest.NewServer(g.Handler())
	t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The gateway ends the device streams first, so that the front's Close
	// does not wait on them; the store closes last.
	if err := e.gw.Close(ctx); err != nil {
		e.t.Errorf("closing gateway: %v", err)
	}
	e.front.Close()
	if err := e.g.Close(ctx); err != nil {
		e.t.Errorf("closing store: %v", err)
	}
	e.g = nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (e *env) do(method, path, token string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequestWithContext(e.ctx, method, e.front.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decoding %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

type device struct {
	ID            string `json:"id"`
	Token         string `json:"token"`
	Subscriptions []struct {
		Upstream  string `json:"upstream"`
		StreamURL string `json:"stream_url"`
	} `json:"subscriptions"`
	sub store.PushSubscription
}

type state struct {
	ID            string `json:"id"`
	Subscriptions []struct {
		Upstream    string `json:"upstream"`
		Pending     int64  `json:"pending"`
		LastEventID string `json:"last_event_id"`
		Connected   bool   `json:"connected"`
	} `json:"subscriptions"`
	Push struct {
		Endpoint   string     `json:"endpoint"`
		LastPushAt *time.Time `json:"last_push_at"`
		Status     string     `json:"status"`
	} `json:"push"`
}

// register makes a device following subs (upstream names, or full
// subscription objects).
func (e *env) register(subs ...any) device {
	e.t.Helper()
	ps, err := e.push.NewSubscription()
	if err != nil {
		e.t.Fatal(err)
	}
	var list []any
	for _, s := range subs {
		if name, ok := s.(string); ok {
			s = map[string]any{"upstream": name}
		}
		list = append(list, s)
	}
	var d device
	code := e.do("POST", "/v1/devices", regToken, map[string]any{"push_subscription": ps, "subscriptions": list}, &d)
	if code != http.StatusCreated {
		e.t.Fatalf("register: %d", code)
	}
	d.sub = ps
	return d
}

func (e *env) state(d device) state {
	e.t.Helper()
	var s state
	if code := e.do("GET", "/v1/devices/"+d.ID, d.Token, nil, &s); code != http.StatusOK {
		e.t.Fatalf("state: %d", code)
	}
	return s
}

// stream is a device's open event stream.
type stream struct {
	t      testing.TB
	resp   *http.Response
	dec    *upstream.Decoder
	cancel context.CancelFunc
}

// open opens the device's stream for up, resuming after lastID if not "".
func (e *env) open(d device, up, lastID string) *stream {
	e.t.Helper()
	return e.openPath(d, up, lastID, "")
}

// openPath is open with more query parameters (starting with &).
func (e *env) openPath(d device, up, lastID, query string) *stream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	u := e.front.URL + "/v1/devices/" + d.ID + "/streams/" + up + "?access_token=" + url.QueryEscape(d.Token) + query
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		e.t.Fatalf("open stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{t: e.t, resp: resp, dec: upstream.NewDecoder(resp.Body), cancel: cancel}
	e.t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event; the test's deadline bounds the wait.
func (s *stream) next() upstream.Event {
	s.t.Helper()
	ev, err := s.dec.Next()
	if err != nil {
		s.t.Fatalf("reading stream: %v", err)
	}
	return ev
}

// expect reads len(data) events and checks their data in order.
func (s *stream) expect(data ...string) []upstream.Event {
	s.t.Helper()
	var evs []upstream.Event
	for i, want := range data {
		ev := s.next()
		if ev.Data != want {
			s.t.Fatalf("event %d: data %q, want %q (id %q, type %q)", i, ev.Data, want, ev.ID, ev.Type)
		}
		evs = append(evs, ev)
	}
	return evs
}

// wake waits for the next wake message at the push service.
func (e *env) wake() pushtest.Delivery {
	e.t.Helper()
	select {
	case d := <-e.push.Received():
		if d.Err != nil {
			e.t.Fatalf("push service refused a wake: %v", d.Err)
		}
		return d
	case <-e.ctx.Done():
		e.t.Fatal("no wake message")
	}
	return pushtest.Delivery{}
}

// noWake checks that no wake message arrived so far.
func (e *env) noWake() {
	e.t.Helper()
	select {
	case d := <-e.push.Received():
		e.t.Fatalf("unexpected wake: %+v", d.Msg)
	default:
	}
}

// eventually polls cond until it holds or the test's deadline passes; for
// state the gateway records asynchronously (a push answer).
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// doRaw is do without a body; a non-JSON answer leaves out untouched.
func (e *env) doRaw(method, path, token string, out *map[string]any) int {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, method, e.front.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}
