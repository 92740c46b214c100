package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests: whatever a client sends to the REST API, the answer is a
// JSON 2xx or 4xx, never a 5xx or a panic.
func FuzzRequests(f *testing.F) {
	e := newEnv(f, nil)
	d := e.register("news")
	good, _ := json.Marshal(d.sub)
	seeds := []struct{ method, path, token, body string }{
		{"POST", "/v1/devices", regToken, `{"push_subscription":` + string(good) + `,"subscriptions":[{"upstream":"news","last_event_id":"1"}]}`},
		{"POST", "/v1/devices", regToken, `{"push_subscription":{"endpoint":"https://10.0.0.1/x","keys":{}},"subscriptions":[{"upstream":"news"}]}`},
		{"PATCH", "/v1/devices/" + d.ID, d.Token, `{"subscriptions":[{"upstream":"news","headers":{"A":"b"}}]}`},
		{"POST", "/v1/devices/" + d.ID + "/sleep", d.Token, `{"last_event_ids":{"news":"wl:99999999999999999999"}}`},
		{"GET", "/v1/devices/" + d.ID, d.Token, ``},
		{"POST", "/v1/devices", regToken, `[1,2,{"a":"\u0000"}]`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.token, s.body)
	}
	h := e.gw.Handler()
	f.Fuzz(func(t *testing.T, method, path, token, body string) {
		if method == "DELETE" || !strings.HasPrefix(path, "/v1/") || strings.Contains(path, "/streams/") {
			return // deleting the seed device, or holding a stream open, is not this test
		}
		req, err := http.NewRequest(method, "http://gw"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: error body is not JSON: %q", method, path, rec.Body)
		}
	})
}
