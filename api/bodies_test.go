package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/schema_validation"
)

// The bodies of INTERFACE.md, and near misses that must fail: the schemas
// say something, they are not `{}`.
func TestSchemasAcceptInterfaceBodies(t *testing.T) {
	_, m := model(t)
	sv := schema_validation.NewSchemaValidator()
	cases := []struct {
		schema, body string
		ok           bool
	}{
		{"RegisterRequest", `{"push_subscription": {"endpoint": "https://push.example/send/abc",
			"keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQt", "auth": "tBHItJI5svbpez7KI4CCXg"}},
			"subscriptions": [{"upstream": "news", "last_event_id": "41", "headers": {"Authorization": "Bearer user-token"}}]}`, true},
		{"RegisterRequest", `{"push_subscription": {"endpoint": "https://p.example/x", "expirationTime": null,
			"keys": {"p256dh": "AA", "auth": "BB"}}, "subscriptions": [{"upstream": "news"}]}`, true},
		{"RegisterRequest", `{"subscriptions": [{"upstream": "news"}]}`, false},
		{"RegisterRequest", `{"push_subscription": {"endpoint": "https://p.example/x", "keys": {"p256dh": "AA", "auth": "BB"}},
			"subscriptions": []}`, false},
		{"RegisterRequest", `{"push_subscription": {"endpoint": "https://p.example/x", "keys": {"p256dh": "AA", "auth": "BB"}},
			"subscriptions": [{"upstream": "News!"}]}`, false},
		{"RegisterRequest", `{"push_subscription": {"endpoint": "https://p.example/x", "keys": {"p256dh": "AA", "auth": "BB"}},
			"subscriptions": [{"upstream": "news"}], "extra": 1}`, false},
		{"SubscriptionRequest", `{"upstream": "news", "last_event_id": "a\nb"}`, false},
		{"UpdateRequest", `{"subscriptions": [{"upstream": "news"}]}`, true},
		{"UpdateRequest", `{}`, false},
		{"SleepRequest", `{"last_event_ids": {"news": "44"}}`, true},
		{"SleepRequest", `{"last_event_ids": {"news": 44}}`, false},
		{"RegisteredDevice", `{"id": "d1", "token": "d1.s", "subscriptions": [{"upstream": "news",
			"stream_url": "/v1/devices/d1/streams/news", "pending": 0, "last_event_id": "", "connected": false}],
			"push": {"endpoint": "https://p.example/x", "last_push_at": null, "status": "ok"}}`, true},
		{"RegisteredDevice", `{"id": "d1", "subscriptions": [], "push": {"endpoint": "e", "last_push_at": null, "status": "ok"}}`, false},
		{"DeviceState", `{"id": "d1", "subscriptions": [], "push": {"endpoint": "e",
			"last_push_at": "2026-01-02T03:04:05Z", "status": "failing", "last_error": "503"}}`, true},
		{"DeviceState", `{"id": "d1", "subscriptions": [], "push": {"endpoint": "e", "last_push_at": null, "status": "weird"}}`, false},
		{"DeviceState", `{"id": "d1", "subscriptions": [{"upstream": "news", "stream_url": "/x", "pending": -1,
			"last_event_id": "", "connected": true}], "push": {"endpoint": "e", "last_push_at": null, "status": "ok"}}`, false},
		{"Error", `{"error": "unknown field", "field": "subscriptions[0].upstream"}`, true},
		{"Error", `{"field": "x"}`, false},
		{"VAPIDKey", `{"public_key": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"}`, true},
		{"VAPIDKey", `{"public_key": "not base64url!"}`, false},
		{"GapEvent", `{"last_event_id": "12", "oldest_event_id": "40"}`, true},
		{"WakePayload", `{"type": "wakeline.wake", "device": "d1", "upstream": "news", "pending": 3, "last_event_id": "44"}`, true},
		{"WakePayload", `{"type": "wakeline.wake", "device": "d1", "upstream": "news"}`, true},
		{"WakePayload", `{"type": "other", "device": "d1", "upstream": "news"}`, false},
	}
	for _, c := range cases {
		var v any
		if err := json.Unmarshal([]byte(c.body), &v); err != nil {
			t.Fatalf("%s: bad test body: %v", c.schema, err)
		}
		ok, errs := sv.ValidateSchemaObject(schema(t, m, c.schema), v)
		if ok != c.ok {
			t.Errorf("%s %s: valid=%v, want %v (%s)", c.schema, c.body, ok, c.ok, describe(errs))
		}
	}
}

// TestValidatesHTTPExchanges shows the library checking requests and
// answers against the document, as the gateway's contract test will.
func TestValidatesHTTPExchanges(t *testing.T) {
	doc, _ := model(t)
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	reg := `{"push_subscription": {"endpoint": "https://push.example/send/abc", "keys": {"p256dh": "AA", "auth": "BB"}},
		"subscriptions": [{"upstream": "news"}]}`
	req := httptest.NewRequest(http.MethodPost, "/v1/devices", bytes.NewBufferString(reg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer change-me")
	if ok, errs := v.ValidateHttpRequestSync(req); !ok {
		t.Fatalf("valid registration rejected: %s", describe(errs))
	}

	created := `{"id": "d1", "token": "d1.s", "subscriptions": [{"upstream": "news",
		"stream_url": "/v1/devices/d1/streams/news", "pending": 0, "last_event_id": "", "connected": false}],
		"push": {"endpoint": "https://push.example/send/abc", "last_push_at": null, "status": "ok"}}`
	req = httptest.NewRequest(http.MethodPost, "/v1/devices", bytes.NewBufferString(reg))
	req.Header.Set("Content-Type", "application/json")
	if ok, errs := v.ValidateHttpResponse(req, answer(201, "application/json", created)); !ok {
		t.Fatalf("valid 201 rejected: %s", describe(errs))
	}
	if ok, _ := v.ValidateHttpResponse(req, answer(201, "application/json", `{"id": "d1"}`)); ok {
		t.Fatal("a 201 without token, subscriptions and push passed")
	}
	if ok, _ := v.ValidateHttpResponse(req, answer(400, "application/json", `{"message": "bad"}`)); ok {
		t.Fatal("a 400 without the error field passed")
	}

	stream := httptest.NewRequest(http.MethodGet, "/v1/devices/d1/streams/news?access_token=d1.s&last_event_id=41", nil)
	if ok, errs := v.ValidateHttpRequestSync(stream); !ok {
		t.Fatalf("stream request with access_token rejected: %s", describe(errs))
	}
}

func answer(code int, ct, body string) *http.Response {
	return &http.Response{
		StatusCode: code,
		Header:     http.Header{"Content-Type": {ct}},
		Body:       io.NopCloser(bytes.NewBufferString(body)),
	}
}
