package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"

	"github.com/wakeline/wakeline/api"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// contract is a real gateway in process (bolt file, origin, push service
// that decrypts) and a validator of api.Spec that checks every exchange.
type contract struct {
	t      *testing.T
	ctx    context.Context // bounds every wait
	v      validator.Validator
	base   string
	origin *upstreamtest.Origin
	push   *pushtest.Server
	gw     *proxy.Gateway
	client *http.Client
}

func newContract(t *testing.T) *contract {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	doc, err := libopenapi.NewDocument(api.Spec)
	if err != nil {
		t.Fatal(err)
	}
	// Format assertions: date-time and uri are part of the contract.
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	c := &contract{t: t, ctx: ctx, v: v, origin: upstreamtest.New(), push: pushtest.New(), client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(c.origin.Close)
	t.Cleanup(c.push.Close)
	c.start()
	return c
}

func (c *contract) start() {
	t := c.t
	g, err := proxytest.Start(t.Context(), proxytest.Options{
		Config: proxytest.Config(c.origin.URL), Path: filepath.Join(t.TempDir(), "wakeline.db"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.gw = g.Gateway
	front := httptest.NewServer(g.Handler())
	c.base = front.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.gw.Close(ctx); err != nil && !errors.Is(err, proxy.ErrClosed) {
			t.Errorf("closing the gateway: %v", err)
		}
		front.Close()
		if err := g.Close(ctx); err != nil {
			t.Errorf("closing the store: %v", err)
		}
		c.client.CloseIdleConnections()
	})
}

// exchange is one request and the status it must get.
type exchange struct {
	method, path string
	token        string // bearer token; none when ""
	body         string
	contentType  string // application/json when body is set and this is ""
	header       http.Header
	status       int
	// doc says whether the request keeps to the document: bad requests
	// break it on purpose (no credentials, a wrong body), and then the
	// document must reject them too.
	doc conformance
}

// conformance is how a request relates to the document.
type conformance int

const (
	onDocument  conformance = iota // the document accepts the request
	offDocument                    // the document rejects it
	// beyondSchema: the document says in words what the gateway checks
	// (a body over 64 KiB), which a schema cannot express.
	beyondSchema
)

// do sends x, checks its status, validates the request (as x.doc says)
// and the answer against api.Spec, and returns the answer's body (for an
// event stream, its first chunk).
func (c *contract) do(x exchange) []byte {
	c.t.Helper()
	what := x.method + " " + x.path
	req := c.request(x)
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	body := readAnswer(c.t, what, resp)
	if resp.StatusCode != x.status {
		c.t.Errorf("%s: %d %s, want %d", what, resp.StatusCode, body, x.status)
	}
	switch ok, errs := c.v.ValidateHttpRequestSync(c.request(x)); {
	case x.doc == offDocument && ok:
		c.t.Errorf("%s: the document accepts a request the gateway refuses with %d", what, resp.StatusCode)
	case x.doc == onDocument && !ok:
		c.t.Errorf("%s: the request does not match the document: %s", what, describe(errs))
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := c.v.ValidateHttpResponse(c.request(x), resp); !ok {
		c.t.Errorf("%s: the %d answer %s does not match the document: %s", what, resp.StatusCode, body, describe(errs))
	}
	checkHeaders(c.t, what, resp)
	return body
}

// checkHeaders checks the header values the document states, which the
// validator only checks for presence.
func checkHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	h := resp.Header
	switch ct := h.Get("Content-Type"); {
	case resp.StatusCode == http.StatusNoContent:
		if ct != "" {
			t.Errorf("%s: 204 with Content-Type %q", what, ct)
		}
	case strings.HasPrefix(ct, "text/event-stream"):
		if ct != "text/event-stream" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: stream with Content-Type %q, Cache-Control %q", what, ct, h.Get("Cache-Control"))
		}
	case resp.StatusCode >= 400 && ct != "application/json":
		t.Errorf("%s: %d with Content-Type %q, want application/json", what, resp.StatusCode, ct)
	}
	if resp.StatusCode == http.StatusUnauthorized && h.Get("WWW-Authenticate") != `Bearer realm="wakeline"` {
		t.Errorf("%s: 401 with WWW-Authenticate %q", what, h.Get("WWW-Authenticate"))
	}
}

func (c *contract) request(x exchange) *http.Request {
	var rd io.Reader
	if x.body != "" {
		rd = strings.NewReader(x.body)
	}
	req, err := http.NewRequestWithContext(c.ctx, x.method, c.base+x.path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, vs := range x.header {
		req.Header[k] = vs
	}
	if x.token != "" {
		req.Header.Set("Authorization", "Bearer "+x.token)
	}
	if ct := x.contentType; ct != "" || x.body != "" {
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	return req
}

// readAnswer reads the whole body, or the first chunk of an endless event
// stream, and closes it.
func readAnswer(t *testing.T, what string, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		buf := make([]byte, 4096)
		n, err := resp.Body.Read(buf)
		if n == 0 {
			t.Fatalf("%s: empty event stream: %v", what, err)
		}
		return buf[:n]
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", what, err)
	}
	return body
}
