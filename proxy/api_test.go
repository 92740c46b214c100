package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wakeline/wakeline/config"
)

func TestRegistrationRejectsBadInput(t *testing.T) {
	f := false
	e := newEnv(t, func(c *config.Config) {
		c.Upstreams = append(c.Upstreams, config.Upstream{
			Name: "mine", URL: c.Upstreams[0].URL, Shared: &f, DeviceHeaders: []string{"Authorization"},
			Retry: c.Upstreams[0].Retry, Buffer: c.Upstreams[0].Buffer,
		})
	})
	good, err := e.push.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	goodJSON, _ := json.Marshal(good)
	withSub := func(subs string) string {
		return `{"push_subscription":` + string(goodJSON) + `,"subscriptions":` + subs + `}`
	}
	withPush := func(p string) string { return `{"push_subscription":` + p + `,"subscriptions":[{"upstream":"news"}]}` }
	cases := []struct {
		name, token, body string
		code              int
		field             string
	}{
		{"no token", "", withSub(`[{"upstream":"news"}]`), 401, ""},
		{"wrong token", "nope", withSub(`[{"upstream":"news"}]`), 401, ""},
		{"not JSON", regToken, `{"push_subscription":`, 400, ""},
		{"empty body", regToken, ``, 400, ""},
		{"two objects", regToken, withSub(`[{"upstream":"news"}]`) + `{}`, 400, ""},
		{"unknown field", regToken, `{"push_subscriptoin":{}}`, 400, "push_subscriptoin"},
		{"wrong type", regToken, withSub(`"news"`), 400, "subscriptions"},
		{"missing push subscription", regToken, `{"subscriptions":[{"upstream":"news"}]}`, 400, "push_subscription"},
		{"no subscriptions", regToken, withSub(`[]`), 400, "subscriptions"},
		{"unknown upstream", regToken, withSub(`[{"upstream":"sports"}]`), 400, "subscriptions[0].upstream"},
		{"upstream twice", regToken, withSub(`[{"upstream":"news"},{"upstream":"news"}]`), 400, "subscriptions[1].upstream"},
		{"headers on a shared upstream", regToken, withSub(`[{"upstream":"news","headers":{"Authorization":"x"}}]`), 400, "subscriptions[0].headers"},
		{"header not allowed", regToken, withSub(`[{"upstream":"mine","headers":{"Cookie":"x"}}]`), 400, "subscriptions[0].headers.Cookie"},
		{"header value with newline", regToken, withSub(`[{"upstream":"mine","headers":{"Authorization":"a\nb"}}]`), 400, "subscriptions[0].headers.Authorization"},
		{"last id with newline", regToken, withSub(`[{"upstream":"news","last_event_id":"a\nb"}]`), 400, "subscriptions[0].last_event_id"},
		{"bad p256dh", regToken, withPush(`{"endpoint":"` + good.Endpoint + `","keys":{"p256dh":"AAAA","auth":"` + good.Keys.Auth + `"}}`), 400, "push_subscription.keys.p256dh"},
		{"bad auth", regToken, withPush(`{"endpoint":"` + good.Endpoint + `","keys":{"p256dh":"` + good.Keys.P256dh + `","auth":"AAAA"}}`), 400, "push_subscription.keys.auth"},
		{"endpoint not a URL", regToken, withPush(`{"endpoint":"::","keys":{"p256dh":"` + good.Keys.P256dh + `","auth":"` + good.Keys.Auth + `"}}`), 400, "push_subscription.endpoint"},
		{"body too large", regToken, withSub(`[{"upstream":"news","last_event_id":"` + strings.Repeat("x", 70<<10) + `"}]`), 413, ""},
		{"browser toJSON with expirationTime", regToken, `{"push_subscription":{"endpoint":"` + good.Endpoint + `","expirationTime":null,"keys":{"p256dh":"` + good.Keys.P256dh + `","auth":"` + good.Keys.Auth + `"}},"subscriptions":[{"upstream":"news"}]}`, 201, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body struct {
				Error string `json:"error"`
				Field string `json:"field"`
			}
			code := e.do("POST", "/v1/devices", c.token, c.body, &body)
			if code != c.code {
				t.Fatalf("%d, want %d (%+v)", code, c.code, body)
			}
			if code >= 400 && (body.Error == "" || body.Field != c.field) {
				t.Fatalf("error %+v, want field %q", body, c.field)
			}
		})
	}
}

func TestPrivatePushEndpointsRefusedByDefault(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Push.AllowInsecureEndpoints = false })
	sub, err := e.push.NewSubscription() // http://127.0.0.1:...
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Field string }
	code := e.do("POST", "/v1/devices", regToken, map[string]any{"push_subscription": sub, "subscriptions": []any{map[string]string{"upstream": "news"}}}, &body)
	if code != 400 || body.Field != "push_subscription.endpoint" {
		t.Fatalf("%d %+v, want 400 naming push_subscription.endpoint", code, body)
	}
}

func TestMethodsPathsAndServiceEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected() // the origin gauge has a series once a connection has a state
	cases := []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/v1/devices", regToken, 405},
		{"PUT", "/v1/devices/" + d.ID, d.Token, 405},
		{"GET", "/v1/devices/" + d.ID + "/sleep", d.Token, 405},
		{"POST", "/v1/devices/" + d.ID + "/streams/news", d.Token, 405},
		{"GET", "/v1/devices/" + d.ID + "/streams/sports", d.Token, 404},
		{"GET", "/v1/nothing", "", 404},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/v1/openapi.yaml", "", 200},
		{"POST", "/v1/openapi.yaml", "", 405},
		{"GET", "/v1/devices/" + d.ID + "?access_token=" + d.Token, "", 200},
	}
	for _, c := range cases {
		var body map[string]any
		if code := e.doRaw(c.method, c.path, c.token, &body); code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.code)
		}
		if c.code >= 400 && body["error"] == nil {
			t.Errorf("%s %s: no JSON error: %v", c.method, c.path, body)
		}
	}
	var vapid struct {
		PublicKey string `json:"public_key"`
	}
	if code := e.do("GET", "/v1/vapid", "", nil, &vapid); code != 200 || len(vapid.PublicKey) != 87 {
		t.Fatalf("vapid: %d %q", code, vapid.PublicKey)
	}
	resp, err := http.Get(e.front.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"wakeline_origin_connections", "wakeline_device_streams_open", "wakeline_store_append_seconds"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	e.stop()
}

func TestPatchAndDelete(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	fresh, err := e.push.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if code := e.do("PATCH", "/v1/devices/"+d.ID, d.Token, map[string]any{"push_subscription": fresh}, &st); code != 200 {
		t.Fatalf("patch: %d", code)
	}
	if st.Push.Endpoint != fresh.Endpoint || st.Push.Status != "ok" {
		t.Fatalf("patched state %+v", st.Push)
	}
	if code := e.do("PATCH", "/v1/devices/"+d.ID, d.Token, map[string]any{}, nil); code != 400 {
		t.Fatalf("empty patch: %d, want 400", code)
	}
	// A wake now goes to the new endpoint.
	emit(e.origin, "1")
	if w := e.wake(); w.Endpoint != fresh.Endpoint {
		t.Fatalf("wake went to %s, want the rotated endpoint", w.Endpoint)
	}
	s := e.open(d, "news", "")
	s.expect("e1")
	if code := e.do("DELETE", "/v1/devices/"+d.ID, d.Token, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := s.dec.Next(); err == nil {
		t.Fatal("stream of a deleted device still open")
	}
	if code := e.do("GET", "/v1/devices/"+d.ID, d.Token, nil, nil); code != 404 {
		t.Fatalf("get after delete: %d, want 404", code)
	}
	e.stop()
	if e.origin.Open() != 0 {
		t.Fatal("origin connection outlived its last subscriber")
	}
}

func TestTwoStreamsOfOneDeviceAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	old := e.open(d, "news", "")
	emit(e.origin, "1")
	old.expect("e1")
	racing := e.open(d, "news", "1") // a reconnect racing the old connection
	emit(e.origin, "2", "3")
	old.expect("e2", "e3")
	racing.expect("e2", "e3")
	old.close()
	emit(e.origin, "4")
	racing.expect("e4")
	e.eventually("cursor at 4", func() bool {
		st := e.state(d).Subscriptions[0]
		return st.Connected && st.LastEventID == "4"
	})
	e.noWake()
}

func TestRegisterWithLastEventIDOnPerDeviceUpstream(t *testing.T) {
	f := false
	e := newEnv(t, func(c *config.Config) { c.Upstreams[0].Shared = &f })
	emit(e.origin, "1", "2", "3") // history the device partly saw directly
	d := e.register(map[string]any{"upstream": "news", "last_event_id": "1"})
	if h := e.waitConnected(); h.Get("Last-Event-ID") != "1" {
		t.Fatalf("origin asked with Last-Event-ID %q, want 1", h.Get("Last-Event-ID"))
	}
	w := e.wake() // what the origin replayed is pending for a sleeping device
	if w.Msg.Device != d.ID {
		t.Fatalf("wake %+v", w.Msg)
	}
	s := e.open(d, "news", "")
	s.expect("e2", "e3")
}

func TestSleepHandsOverToPerDeviceOrigin(t *testing.T) {
	f := false
	e := newEnv(t, func(c *config.Config) { c.Upstreams[0].Shared = &f })
	emit(e.origin, "1", "2", "3") // the device read these from the origin itself
	d := e.register("news")
	if h := e.waitConnected(); h.Get("Last-Event-ID") != "" {
		t.Fatalf("first connection sent Last-Event-ID %q", h.Get("Last-Event-ID"))
	}
	// It hands over with an id the gateway never stored: the gateway asks
	// the origin for what follows it.
	if code := e.do("POST", "/v1/devices/"+d.ID+"/sleep", d.Token, map[string]any{"last_event_ids": map[string]string{"news": "2"}}, nil); code != 204 {
		t.Fatalf("sleep: %d", code)
	}
	if h := e.waitConnected(); h.Get("Last-Event-ID") != "2" {
		t.Fatalf("reconnected with Last-Event-ID %q, want 2", h.Get("Last-Event-ID"))
	}
	if w := e.wake(); w.Msg.Device != d.ID || w.Msg.LastEventID != "3" {
		t.Fatalf("wake %+v", w.Msg)
	}
	s := e.open(d, "news", "")
	s.expect("e3")

	var body struct{ Field string }
	if code := e.do("POST", "/v1/devices/"+d.ID+"/sleep", d.Token, map[string]any{"last_event_ids": map[string]string{"sports": "1"}}, &body); code != 400 || body.Field != "last_event_ids.sports" {
		t.Fatalf("sleep on an unknown upstream: %d %+v", code, body)
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Stream.CORSOrigins = []string{"https://app.example"} })
	cases := []struct {
		name, method, origin string
		wantAllow            string
		wantCode             int
	}{
		{"preflight from the app", "OPTIONS", "https://app.example", "https://app.example", 204},
		{"request from the app", "GET", "https://app.example", "https://app.example", 200},
		{"another origin", "GET", "https://evil.example", "", 200},
		{"preflight from another origin", "OPTIONS", "https://evil.example", "", 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, e.front.URL+"/v1/vapid", nil)
			req.Header.Set("Origin", c.origin)
			if c.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.wantAllow || resp.StatusCode != c.wantCode {
				t.Fatalf("%d, Allow-Origin %q; want %d, %q", resp.StatusCode, got, c.wantCode, c.wantAllow)
			}
		})
	}
}
