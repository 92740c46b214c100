// Package pushtest is a Web Push service for tests and demos: a Server that
// checks every request the way a real push service does (Content-Encoding
// aes128gcm, TTL, Urgency and Topic headers, the VAPID JWT of RFC 8292),
// decrypts the body with the subscriber's keys (RFC 8291) and records what it
// received. Per subscription it can be scripted to answer 404, 410, 413, 429
// with Retry-After, 5xx, or to hang.
//
// It is an ordinary package, not a _test file, so that the demo command and
// other packages' tests can use it.
package pushtest

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

// Limits of the server.
const (
	// MaxBody is the largest body accepted; larger ones get 413, as from
	// a real push service.
	MaxBody = 4096
	// receivedCap bounds the Received channel; deliveries past it are
	// counted in Stats.Dropped and otherwise forgotten.
	receivedCap = 4096
	// maxTokenCache bounds the verified-VAPID-token cache.
	maxTokenCache = 1024
	// inProcessURL is the base URL of a NewInProcess server.
	inProcessURL = "http://push.test"
)

// Answer is a scripted answer to one request.
type Answer struct {
	// Status is the HTTP status; 0 means 201 Created.
	Status int
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Body is the answer's body, e.g. a reason.
	Body string
	// Hang holds the request until the client gives up or the server is
	// closed, and answers nothing.
	Hang bool
	// Wait, if not nil, holds the request until it is closed, then answers
	// as above (or nothing, if the client gave up or the server closed
	// first). Tests use it to keep a sender busy.
	Wait <-chan struct{}
}

// Delivery is one request the server received, verified and answered.
type Delivery struct {
	Endpoint string      // the subscription's endpoint
	Header   http.Header // the request's headers
	BodyLen  int         // length of the encrypted body
	Payload  []byte      // the decrypted payload, without padding
	Msg      push.Message
	Subject  string    // the VAPID JWT's sub
	VAPIDKey string    // the k parameter of the Authorization header
	Expires  time.Time // the VAPID JWT's exp
	// Status is what the server answered; 0 for a request held by Hang or
	// Wait, which is recorded when it arrives.
	Status int
	// Err says why a malformed request was refused (4xx); nil for a well-formed
	// one, whatever was scripted.
	Err error
}

// Stats counts requests by outcome.
type Stats struct {
	Requests int64 // every request
	Accepted int64 // answered 2xx
	Refused  int64 // malformed (bad headers, VAPID, encryption): Delivery.Err set
	Dropped  int64 // deliveries not kept because Received was full
}

type subscriber struct {
	key    *ecdh.PrivateKey
	auth   []byte
	script []Answer
}

// Server is a push service. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL; endpoints are URL + "/push/<id>".
	URL string

	hs        *httptest.Server // nil in process
	received  chan Delivery
	closing   chan struct{}
	closeOnce sync.Once
	n         atomic.Int64 // message ids for Location

	requests, accepted, refused, dropped atomic.Int64

	mu     sync.Mutex
	subs   map[string]*subscriber
	tokens map[string]vapid // verified Authorization headers
}

func newServer() *Server {
	return &Server{
		received: make(chan Delivery, receivedCap),
		closing:  make(chan struct{}),
		subs:     map[string]*subscriber{},
		tokens:   map[string]vapid{},
	}
}

// New starts a push service on a loopback port. Its endpoints are plain
// http://127.0.0.1, so a Sender needs push.NewHTTPClient(true) to reach it.
func New() *Server {
	s := newServer()
	s.hs = httptest.NewServer(s)
	s.URL = s.hs.URL
	return s
}

// NewInProcess returns a push service without a network listener: its
// endpoints are http://push.test/push/<id>, reached only through Client
// (or Transport). Handy inside a testing/synctest bubble, where a goroutine
// waiting on a socket would keep the fake clock from advancing.
func NewInProcess() *Server {
	s := newServer()
	s.URL = inProcessURL
	return s
}

// Close ends held requests without an answer (the connection is dropped)
// and stops the listener. Idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.hs != nil {
			s.hs.Close()
		}
	})
}

// Received delivers a Delivery for every request, in the order they were
// answered (a held one when it arrives); it holds 4096, and deliveries
// past that, when nobody reads, are only counted in Stats.Dropped.
func (s *Server) Received() <-chan Delivery { return s.received }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Accepted: s.accepted.Load(), Refused: s.refused.Load(), Dropped: s.dropped.Load()}
}

// NewSubscription makes a subscriber: a fresh P-256 key pair and auth
// secret, and an endpoint on this server; what a browser's
// PushSubscription.toJSON() would return.
func (s *Server) NewSubscription() (store.PushSubscription, error) {
	var sub store.PushSubscription
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return sub, fmt.Errorf("pushtest: %w", err)
	}
	auth := make([]byte, 16)
	id := make([]byte, 12)
	_, _ = rand.Read(auth)
	_, _ = rand.Read(id)
	name := hex.EncodeToString(id)
	s.mu.Lock()
	s.subs[name] = &subscriber{key: key, auth: auth}
	s.mu.Unlock()
	sub.Endpoint = s.URL + "/push/" + name
	sub.Keys.P256dh = base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	sub.Keys.Auth = base64.RawURLEncoding.EncodeToString(auth)
	return sub, nil
}

// Script queues answers for the subscription with this endpoint: the next
// requests get them in order (after being verified and recorded), later ones
// 201 again.
func (s *Server) Script(endpoint string, answers ...Answer) error {
	id, ok := strings.CutPrefix(endpoint, s.URL+"/push/")
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[id]
	if !ok || sub == nil {
		return fmt.Errorf("pushtest: no subscription %q", endpoint)
	}
	sub.script = append(sub.script, answers...)
	return nil
}

// Forget removes a subscription: requests to it get 404, like one that
// expired.
func (s *Server) Forget(endpoint string) {
	id, _ := strings.CutPrefix(endpoint, s.URL+"/push/")
	s.mu.Lock()
	delete(s.subs, id)
	s.mu.Unlock()
}

// ServeHTTP handles one push request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	d := Delivery{Endpoint: s.URL + r.URL.Path, Header: r.Header.Clone()}
	ans, err := s.check(r, &d)
	if err != nil {
		s.refused.Add(1)
		d.Err = err
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{code: http.StatusBadRequest}
		}
		d.Status = he.code
		s.record(d)
		http.Error(w, err.Error(), he.code)
		return
	}
	if ans.Hang || ans.Wait != nil {
		s.record(d)
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			// Drop the connection without an answer: returning would
			// answer 200.
			panic(http.ErrAbortHandler)
		case <-ans.Wait: // nil for Hang: never ready
		}
	}
	d.Status = ans.Status
	if d.Status == 0 {
		d.Status = http.StatusCreated
	}
	if ans.Wait == nil {
		s.record(d)
	}
	if ans.RetryAfter != "" {
		w.Header().Set("Retry-After", ans.RetryAfter)
	}
	if d.Status >= 200 && d.Status < 300 {
		s.accepted.Add(1)
		w.Header().Set("Location", s.URL+"/m/"+strconv.FormatInt(s.n.Add(1), 10))
	}
	w.WriteHeader(d.Status)
	_, _ = io.WriteString(w, ans.Body)
}

func (s *Server) record(d Delivery) {
	select {
	case s.received <- d:
	default:
		s.dropped.Add(1)
	}
}

// httpError is a refusal with its status.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func refuse(code int, format string, args ...any) error {
	return &httpError{code: code, err: fmt.Errorf("pushtest: "+format, args...)}
}

// check verifies a request in the order a push service would and returns
// the scripted answer for a well-formed one.
func (s *Server) check(r *http.Request, d *Delivery) (Answer, error) {
	if r.Method != http.MethodPost {
		return Answer{}, refuse(http.StatusMethodNotAllowed, "method %s", r.Method)
	}
	id, _ := strings.CutPrefix(r.URL.Path, "/push/")
	s.mu.Lock()
	sub := s.subs[id]
	s.mu.Unlock()
	if sub == nil {
		return Answer{}, refuse(http.StatusNotFound, "no such subscription")
	}
	if err := checkHeaders(r.Header); err != nil {
		return Answer{}, err
	}
	v, err := s.verify(r.Header.Get("Authorization"))
	if err != nil {
		return Answer{}, &httpError{code: http.StatusUnauthorized, err: err}
	}
	d.Subject, d.VAPIDKey, d.Expires = v.Subject, v.Key, v.Expires
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return Answer{}, refuse(http.StatusBadRequest, "reading body: %v", err)
	}
	d.BodyLen = len(body)
	if len(body) > MaxBody {
		return Answer{}, refuse(http.StatusRequestEntityTooLarge, "body over %d bytes", MaxBody)
	}
	if d.Payload, err = Decrypt(body, sub.key, sub.auth); err != nil {
		return Answer{}, refuse(http.StatusBadRequest, "%v", err)
	}
	_ = json.Unmarshal(d.Payload, &d.Msg) // a push service does not read the payload
	return s.next(id), nil
}

func (s *Server) next(id string) Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[id]
	if sub == nil || len(sub.script) == 0 {
		return Answer{}
	}
	a := sub.script[0]
	sub.script = sub.script[1:]
	return a
}

// checkHeaders checks the RFC 8030 and RFC 8291 headers.
func checkHeaders(h http.Header) error {
	if ce := h.Get("Content-Encoding"); ce != "aes128gcm" {
		return refuse(http.StatusUnsupportedMediaType, "Content-Encoding %q, want aes128gcm", ce)
	}
	ttl := h.Values("TTL")
	if len(ttl) != 1 {
		return refuse(http.StatusBadRequest, "exactly one TTL header required")
	}
	if n, err := strconv.ParseUint(ttl[0], 10, 31); err != nil || strconv.FormatUint(n, 10) != ttl[0] {
		return refuse(http.StatusBadRequest, "TTL %q is not a number of seconds", ttl[0])
	}
	switch u := h.Get("Urgency"); u {
	case "", "very-low", "low", "normal", "high":
	default:
		return refuse(http.StatusBadRequest, "Urgency %q", u)
	}
	if t := h.Get("Topic"); len(t) > 32 || strings.Trim(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return refuse(http.StatusBadRequest, "Topic %q: at most 32 URL-safe base64 characters", t)
	}
	return nil
}

// verify checks a VAPID header; a header already verified is not verified
// again while its JWT is valid, as a real push service caches them.
func (s *Server) verify(header string) (vapid, error) {
	now := time.Now()
	s.mu.Lock()
	v, ok := s.tokens[header]
	s.mu.Unlock()
	if ok && v.Expires.After(now) {
		return v, nil
	}
	v, err := verifyVAPID(header, s.URL, now)
	if err != nil {
		return vapid{}, err
	}
	s.mu.Lock()
	if len(s.tokens) >= maxTokenCache {
		clear(s.tokens)
	}
	s.tokens[header] = v
	s.mu.Unlock()
	return v, nil
}

// Client returns an HTTP client that reaches this server in process, without
// a network; for a New server it is an alternative to the loopback port.
func (s *Server) Client() *http.Client { return &http.Client{Transport: s.Transport()} }

// Transport returns a RoundTripper that serves requests for s.URL by calling
// the server's handler directly, and refuses any other host.
func (s *Server) Transport() http.RoundTripper { return inProcess{s} }

type inProcess struct{ s *Server }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		defer r.Body.Close()
	}
	if r.URL.Scheme+"://"+r.URL.Host != t.s.URL {
		return nil, fmt.Errorf("pushtest: %s is not served by this push service", r.URL.Host)
	}
	sr := r.Clone(r.Context())
	sr.RequestURI = r.URL.RequestURI()
	sr.RemoteAddr = "192.0.2.1:1234"
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	if aborted := t.serve(rec, sr); aborted {
		return nil, errors.New("pushtest: push service closed the connection")
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// serve calls the handler and reports whether it aborted the connection.
func (t inProcess) serve(w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = true
		}
	}()
	t.s.ServeHTTP(w, r)
	return false
}
