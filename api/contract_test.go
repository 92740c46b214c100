package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi-validator/schema_validation"
	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/api"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/upstream"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const regToken = proxytest.RegistrationToken

// device is a registered device.
type device struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func (c *contract) subscription() string {
	c.t.Helper()
	sub, err := c.push.NewSubscription()
	if err != nil {
		c.t.Fatal(err)
	}
	raw, _ := json.Marshal(sub)
	return string(raw)
}

func (c *contract) register() device {
	c.t.Helper()
	body := c.do(exchange{method: "POST", path: "/v1/devices", token: regToken, status: http.StatusCreated,
		body: `{"push_subscription": ` + c.subscription() + `, "subscriptions": [{"upstream": "news"}]}`})
	var d device
	if err := json.Unmarshal(body, &d); err != nil || d.ID == "" || d.Token == "" {
		c.t.Fatalf("registering: %s (%v)", body, err)
	}
	return d
}

// state is the part of the device state the test waits on.
type state struct {
	Push struct {
		LastPushAt *string `json:"last_push_at"`
	} `json:"push"`
}

// TestServerAnswersMatchDocument drives every operation of the REST API
// on a live gateway, with good and bad requests, and validates requests
// and answers against api.Spec.
func TestServerAnswersMatchDocument(t *testing.T) {
	c := newContract(t)
	c.operations()
	d := c.register()
	// Events reach a device only once the gateway follows the origin.
	select {
	case <-c.origin.Connected():
	case <-c.ctx.Done():
		t.Fatal("the gateway did not connect to the origin")
	}
	other := c.register()
	c.registerErrors()
	c.get(d, other)
	c.patch(d)
	c.stream(d, other)
	c.sleep(d)
	c.delete(d)
	c.notReady()
}

func (c *contract) operations() {
	c.do(exchange{method: "GET", path: "/healthz", status: 200})
	c.do(exchange{method: "GET", path: "/readyz", status: 200})
	c.do(exchange{method: "GET", path: "/v1/vapid", status: 200})
	c.do(exchange{method: "GET", path: "/metrics", status: 200})
	if spec := c.do(exchange{method: "GET", path: "/v1/openapi.yaml", status: 200}); !bytes.Equal(spec, api.Spec) {
		c.t.Error("/v1/openapi.yaml is not api.Spec")
	}
}

func (c *contract) registerErrors() {
	good := `{"push_subscription": ` + c.subscription() + `, "subscriptions": [{"upstream": "news"}]}`
	post := func(token, body, ct string, status int, doc conformance) []byte {
		return c.do(exchange{method: "POST", path: "/v1/devices", token: token, body: body, contentType: ct, status: status, doc: doc})
	}
	post("", good, "", http.StatusUnauthorized, offDocument)
	post("wrong", good, "", http.StatusUnauthorized, onDocument) // well-formed, but not a registration token
	post(regToken, `{"push_subscription": 1, "subscriptions": [{"upstream": "news"}]}`, "", http.StatusBadRequest, offDocument)
	post(regToken, `{"push_subscription": {"endpoint": "http://x/", "keys": {"p256dh": "AA", "auth": "BB"}}, "subscriptions": [{"upstream": "news"}], "extra": 1}`, "", http.StatusBadRequest, offDocument)
	post(regToken, `{"push_subscription": `, "", http.StatusBadRequest, offDocument)
	// Valid by the schema, but the gateway has no such upstream.
	var e struct{ Error, Field string }
	_ = json.Unmarshal(post(regToken, strings.Replace(good, `"news"`, `"sports"`, 1), "", http.StatusBadRequest, onDocument), &e)
	if e.Field != "subscriptions[0].upstream" {
		c.t.Errorf("unknown upstream: field %q, want subscriptions[0].upstream", e.Field)
	}
	huge := `{"push_subscription": {"endpoint": "https://push.example/` + strings.Repeat("a", 70<<10) + `", "keys": {"p256dh": "AA", "auth": "BB"}}, "subscriptions": [{"upstream": "news"}]}`
	post(regToken, huge, "", http.StatusRequestEntityTooLarge, beyondSchema)
	post(regToken, good, "text/plain", http.StatusUnsupportedMediaType, offDocument)
}

func (c *contract) get(d, other device) {
	path := "/v1/devices/" + d.ID
	c.do(exchange{method: "GET", path: path, token: d.Token, status: 200})
	c.do(exchange{method: "GET", path: path + "?access_token=" + d.Token, status: 200})
	c.do(exchange{method: "GET", path: path, status: http.StatusUnauthorized, doc: offDocument})
	c.do(exchange{method: "GET", path: path, token: d.ID + ".wrong-secret", status: http.StatusUnauthorized})
	c.do(exchange{method: "GET", path: "/v1/devices/" + other.ID, token: d.Token, status: http.StatusNotFound})
	c.do(exchange{method: "GET", path: "/v1/devices/no-such-device", token: d.Token, status: http.StatusNotFound})
}

func (c *contract) patch(d device) {
	path := "/v1/devices/" + d.ID
	patch := func(token, body string, status int, doc conformance) {
		c.do(exchange{method: "PATCH", path: path, token: token, body: body, status: status, doc: doc})
	}
	patch(d.Token, `{"push_subscription": `+c.subscription()+`}`, 200, onDocument)
	patch(d.Token, `{"subscriptions": [{"upstream": "news", "last_event_id": "0"}]}`, 200, onDocument)
	patch(d.Token, `{"subscriptions": [{"upstream": "sports"}]}`, http.StatusBadRequest, onDocument)
	patch(d.Token, `{"subscriptions": "news"}`, http.StatusBadRequest, offDocument)
	patch("", `{"push_subscription": `+c.subscription()+`}`, http.StatusUnauthorized, offDocument)
	big := `{"subscriptions": [{"upstream": "news", "last_event_id": "` + strings.Repeat("9", 70<<10) + `"}]}`
	patch(d.Token, big, http.StatusRequestEntityTooLarge, beyondSchema)
}

func (c *contract) stream(d, other device) {
	path := "/v1/devices/" + d.ID + "/streams/news"
	first := c.do(exchange{method: "GET", path: path + "?access_token=" + d.Token, status: 200})
	if !bytes.HasPrefix(first, []byte("retry:")) {
		c.t.Errorf("the stream starts with %q, want its retry: hint", first)
	}
	c.do(exchange{method: "GET", path: path + "?last_event_id=nowhere", token: d.Token, status: 200})
	c.gap(path+"?last_event_id=nowhere", d.Token)
	c.do(exchange{method: "GET", path: path, token: d.Token, header: http.Header{"Last-Event-Id": {"0"}}, status: 200})
	c.do(exchange{method: "GET", path: "/v1/devices/" + d.ID + "/streams/sports?access_token=" + d.Token, status: http.StatusNotFound})
	c.do(exchange{method: "GET", path: "/v1/devices/" + other.ID + "/streams/news?access_token=" + d.Token, status: http.StatusNotFound})
	c.do(exchange{method: "GET", path: path, status: http.StatusUnauthorized, doc: offDocument})
}

// gap opens the stream from a resume point that was never buffered: the
// first event is a wakeline.gap without an id whose data is a GapEvent. It
// must come at once, not with the next heartbeat (15 s here): regression
// test for a gap event left unflushed when nothing followed it.
func (c *contract) gap(path, token string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	req := c.request(exchange{method: "GET", path: path, token: token})
	resp, err := c.client.Do(req.WithContext(ctx))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	ev, err := upstream.NewDecoder(resp.Body).Next()
	if err != nil {
		c.t.Fatalf("reading the gap event (before the first heartbeat): %v", err)
	}
	if ev.Type != "wakeline.gap" || ev.HasID {
		c.t.Fatalf("first event %+v, want a wakeline.gap without an id", ev)
	}
	var v any
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		c.t.Fatalf("gap data %q: %v", ev.Data, err)
	}
	_, m := model(c.t)
	if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaObject(schema(c.t, m, "GapEvent"), v); !ok {
		c.t.Errorf("gap data %s is not a GapEvent: %s", ev.Data, describe(errs))
	}
}

// sleep hands the stream over, and waits for the wake the next event
// causes, so that the state shows a push time.
func (c *contract) sleep(d device) {
	path := "/v1/devices/" + d.ID + "/sleep"
	sleep := func(body string, status int, doc conformance) {
		c.do(exchange{method: "POST", path: path, token: d.Token, body: body, status: status, doc: doc})
	}
	sleep(`{"last_event_ids": {"news": 44}}`, http.StatusBadRequest, offDocument)
	sleep(`{"last_event_ids": {"sports": "1"}}`, http.StatusBadRequest, onDocument)
	sleep(`{"last_event_ids": {}}`, http.StatusNoContent, onDocument)
	c.do(exchange{method: "POST", path: path, body: `{}`, status: http.StatusUnauthorized, doc: offDocument})

	// Both registered devices follow news and have no stream open: both
	// are woken.
	c.origin.Emit(upstreamtest.Event{ID: "1", Data: "one"})
	for woken := false; !woken; {
		select {
		case w := <-c.push.Received():
			if w.Err != nil {
				c.t.Fatalf("the push service refused a wake: %v", w.Err)
			}
			woken = w.Msg.Device == d.ID
		case <-c.ctx.Done():
			c.t.Fatal("no wake")
		}
	}
	c.waitPushed(d)
	c.do(exchange{method: "GET", path: "/v1/devices/" + d.ID, token: d.Token, status: 200})
}

// waitPushed waits until the device state records the wake: the gateway
// stores the push service's answer asynchronously.
func (c *contract) waitPushed(d device) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req := c.request(exchange{method: "GET", path: "/v1/devices/" + d.ID, token: d.Token})
		resp, err := c.client.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		var s state
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		if s.Push.LastPushAt != nil {
			return
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatal("the state never showed last_push_at")
		case <-tick.C:
		}
	}
}

func (c *contract) delete(d device) {
	path := "/v1/devices/" + d.ID
	c.do(exchange{method: "DELETE", path: path, status: http.StatusUnauthorized, doc: offDocument})
	c.do(exchange{method: "DELETE", path: path, token: d.Token, status: http.StatusNoContent})
	c.do(exchange{method: "DELETE", path: path, token: d.Token, status: http.StatusNotFound})
	c.do(exchange{method: "GET", path: path, token: d.Token, status: http.StatusNotFound})
	c.do(exchange{method: "POST", path: path + "/sleep", token: d.Token, body: `{}`, status: http.StatusNotFound})
}

// notReady closes the gateway: /readyz answers 503, /healthz still 200.
func (c *contract) notReady() {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if err := c.gw.Close(ctx); err != nil {
		c.t.Fatal(err)
	}
	c.do(exchange{method: "GET", path: "/readyz", status: http.StatusServiceUnavailable})
	c.do(exchange{method: "GET", path: "/healthz", status: 200})
}

// TestMethodNotAllowed: a method a path does not list is 405 with Allow
// and the Error body (components/responses/MethodNotAllowed).
func TestMethodNotAllowed(t *testing.T) {
	c := newContract(t)
	_, m := model(t)
	sv := schema_validation.NewSchemaValidator()
	for _, x := range []struct{ method, path, allow string }{
		{"GET", "/v1/devices", "POST"},
		{"PUT", "/v1/devices/d1", "GET, PATCH, DELETE"},
		{"GET", "/v1/devices/d1/sleep", "POST"},
		{"POST", "/v1/devices/d1/streams/news", "GET"},
		{"POST", "/v1/vapid", "GET"},
		{"DELETE", "/v1/openapi.yaml", "GET"},
	} {
		resp, err := c.client.Do(c.request(exchange{method: x.method, path: x.path}))
		if err != nil {
			t.Fatal(err)
		}
		body := readAnswer(t, x.method+" "+x.path, resp)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != x.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405, Allow %q", x.method, x.path, resp.StatusCode, resp.Header.Get("Allow"), x.allow)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: body %s: %v", x.method, x.path, body, err)
			continue
		}
		if ok, errs := sv.ValidateSchemaObject(schema(t, m, "Error"), v); !ok {
			t.Errorf("%s %s: body %s is not an Error: %s", x.method, x.path, body, describe(errs))
		}
	}
}
