package pushtest_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func b64d(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 8291 Appendix A.
func TestDecryptRFC8291Example(t *testing.T) {
	ua, err := ecdh.P256().NewPrivateKey(b64d(t, "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"))
	if err != nil {
		t.Fatal(err)
	}
	auth := b64d(t, "BTBZMqHH6r4Tts7J_aSIgg")
	body := b64d(t, "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
	got, err := pushtest.Decrypt(body, ua, auth)
	if err != nil || string(got) != "When I grow up, I want to be a watermelon" {
		t.Fatalf("%q %v", got, err)
	}
	for i := range []int{0, 20, 30, len(body) - 1} {
		bad := bytes.Clone(body)
		bad[i] ^= 1
		if _, err := pushtest.Decrypt(bad, ua, auth); err == nil {
			t.Errorf("byte %d flipped: decrypted", i)
		}
	}
	for _, n := range []int{0, 20, 86, 102} {
		if _, err := pushtest.Decrypt(body[:n], ua, auth); err == nil {
			t.Errorf("truncated to %d: decrypted", n)
		}
	}
}

// vapidKey is an application server's key pair.
type vapidKey struct {
	priv *ecdsa.PrivateKey
	k    string
	keys store.VAPIDKeys
}

func newVAPIDKey(t *testing.T) vapidKey {
	keys, err := push.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b64d(t, keys.Private))
	if err != nil {
		t.Fatal(err)
	}
	return vapidKey{priv: priv, k: keys.Public, keys: keys}
}

func (v vapidKey) header(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(v.priv)
	if err != nil {
		t.Fatal(err)
	}
	return "vapid t=" + tok + ", k=" + v.k
}

// capture makes webpush-go build a request and hands it back unsent.
type capture struct{ req *http.Request }

func (c *capture) Do(r *http.Request) (*http.Response, error) {
	c.req = r
	return &http.Response{StatusCode: 201, Body: http.NoBody}, nil
}

// validRequest is a well-formed push request built by webpush-go, a third
// party implementation, with its traps avoided.
func validRequest(t *testing.T, v vapidKey, sub store.PushSubscription, payload string) *http.Request {
	t.Helper()
	c := &capture{}
	_, err := webpush.SendNotificationWithContext(t.Context(), []byte(payload),
		&webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{Auth: sub.Keys.Auth, P256dh: sub.Keys.P256dh}},
		&webpush.Options{HTTPClient: c, Subscriber: "ops@example.com", TTL: 60, Urgency: webpush.UrgencyHigh,
			Topic: "abc", RecordSize: 512, VAPIDPublicKey: v.keys.Public, VAPIDPrivateKey: v.keys.Private})
	if err != nil {
		t.Fatal(err)
	}
	return c.req
}

func do(t *testing.T, c *http.Client, r *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func next(t *testing.T, s *pushtest.Server) pushtest.Delivery {
	t.Helper()
	select {
	case d := <-s.Received():
		return d
	default:
		t.Fatal("nothing recorded")
	}
	return pushtest.Delivery{}
}

func TestServerAcceptsWebpushGo(t *testing.T) {
	srv := pushtest.New()
	defer srv.Close()
	c := &http.Client{}
	defer c.CloseIdleConnections()
	sub, err := srv.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	v := newVAPIDKey(t)
	resp := do(t, c, validRequest(t, v, sub, `{"type":"wakeline.wake","device":"d","upstream":"u","pending":2}`))
	if resp.StatusCode != 201 || resp.Header.Get("Location") == "" {
		t.Fatalf("answer %d", resp.StatusCode)
	}
	d := next(t, srv)
	if d.Err != nil || d.Endpoint != sub.Endpoint || d.Msg.Device != "d" || d.Msg.Pending != 2 || d.BodyLen != 512 ||
		d.Subject != "mailto:ops@example.com" || d.VAPIDKey != v.k || d.Header.Get("Topic") != "abc" {
		t.Fatalf("delivery %+v", d)
	}
	if s := srv.Stats(); s != (pushtest.Stats{Requests: 1, Accepted: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestServerRefusesMalformedRequests(t *testing.T) {
	srv := pushtest.NewInProcess()
	defer srv.Close()
	c := srv.Client()
	sub, err := srv.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	v, other := newVAPIDKey(t), newVAPIDKey(t)
	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) string {
		m := jwt.MapClaims{"aud": srv.URL, "exp": now.Add(12 * time.Hour).Unix(), "sub": "mailto:ops@example.com"}
		edit(m)
		return v.header(t, m)
	}
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"aud": srv.URL, "exp": now.Add(time.Hour).Unix(), "sub": "mailto:a@b.c"}).SignedString(other.priv)
	for _, tc := range []struct {
		name   string
		edit   func(r *http.Request)
		status int
		want   string
	}{
		{"valid", func(*http.Request) {}, 201, ""},
		{"content encoding", func(r *http.Request) { r.Header.Set("Content-Encoding", "aesgcm") }, 415, "aes128gcm"},
		{"no TTL", func(r *http.Request) { r.Header.Del("TTL") }, 400, "TTL"},
		{"bad TTL", func(r *http.Request) { r.Header.Set("TTL", "-1") }, 400, "TTL"},
		{"urgency", func(r *http.Request) { r.Header.Set("Urgency", "urgent") }, 400, "Urgency"},
		{"long topic", func(r *http.Request) { r.Header.Set("Topic", strings.Repeat("a", 33)) }, 400, "Topic"},
		{"topic charset", func(r *http.Request) { r.Header.Set("Topic", "a b") }, 400, "Topic"},
		{"no authorization", func(r *http.Request) { r.Header.Del("Authorization") }, 401, "vapid"},
		{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "WebPush abc") }, 401, "vapid"},
		{"forged signature", func(r *http.Request) { r.Header.Set("Authorization", "vapid t="+forged+", k="+v.k) }, 401, "signature"},
		{"wrong aud", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { m["aud"] = "https://elsewhere.example" }))
		}, 401, "aud"},
		{"expired", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Minute).Unix() }))
		}, 401, "expired"},
		{"exp beyond 24h", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { m["exp"] = now.Add(25 * time.Hour).Unix() }))
		}, 401, "24 hours"},
		{"no sub", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { delete(m, "sub") }))
		}, 401, "sub"},
		{"doubled mailto", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { m["sub"] = "mailto:mailto:ops@example.com" }))
		}, 401, "mailto:mailto:"},
		{"bare sub", func(r *http.Request) {
			r.Header.Set("Authorization", claims(func(m jwt.MapClaims) { m["sub"] = "ops@example.com" }))
		}, 401, "sub"},
		{"tampered body", func(r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			b[len(b)-1] ^= 1
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, 400, "decryption"},
		{"body too large", func(r *http.Request) {
			b := make([]byte, pushtest.MaxBody+1)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, 413, "4096"},
		{"unknown subscription", func(r *http.Request) { r.URL.Path += "x" }, 404, "no such"},
		{"GET", func(r *http.Request) { r.Method = http.MethodGet }, 405, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRequest(t, v, sub, `{"type":"wakeline.wake"}`)
			tc.edit(r)
			if resp := do(t, c, r); resp.StatusCode != tc.status {
				t.Fatalf("answer %d, want %d", resp.StatusCode, tc.status)
			}
			d := next(t, srv)
			if d.Status != tc.status || (tc.want == "") != (d.Err == nil) || (d.Err != nil && !strings.Contains(d.Err.Error(), tc.want)) {
				t.Fatalf("delivery status %d, err %v; want %d and %q", d.Status, d.Err, tc.status, tc.want)
			}
		})
	}
}

func TestServerScript(t *testing.T) {
	srv := pushtest.NewInProcess()
	defer srv.Close()
	c := srv.Client()
	sub, _ := srv.NewSubscription()
	v := newVAPIDKey(t)
	if err := srv.Script(srv.URL+"/push/nope", pushtest.Answer{Status: 410}); err == nil {
		t.Fatal("script for an unknown subscription accepted")
	}
	if err := srv.Script(sub.Endpoint, pushtest.Answer{Status: 429, RetryAfter: "9", Body: "slow down"}, pushtest.Answer{Status: 500}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{429, 500, 201, 201} {
		resp, err := c.Do(validRequest(t, v, sub, "{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("answer %d, want %d", resp.StatusCode, want)
		}
		if want == 429 && (resp.Header.Get("Retry-After") != "9" || string(body) != "slow down") {
			t.Fatalf("429 without Retry-After or body: %q %q", resp.Header.Get("Retry-After"), body)
		}
		if d := next(t, srv); d.Status != want || d.Err != nil {
			t.Fatalf("recorded %d %v", d.Status, d.Err)
		}
	}
	srv.Forget(sub.Endpoint)
	if resp := do(t, c, validRequest(t, v, sub, "{}")); resp.StatusCode != 404 {
		t.Fatalf("forgotten subscription: %d", resp.StatusCode)
	}
	if s := srv.Stats(); s.Requests != 5 || s.Accepted != 2 || s.Refused != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestServerHangAndWait(t *testing.T) {
	srv := pushtest.New()
	c := &http.Client{}
	defer c.CloseIdleConnections()
	sub, _ := srv.NewSubscription()
	v := newVAPIDKey(t)
	gate := make(chan struct{})
	_ = srv.Script(sub.Endpoint, pushtest.Answer{Wait: gate, Status: 202}, pushtest.Answer{Hang: true})
	answered := make(chan int)
	go func() {
		resp := do(t, c, validRequest(t, v, sub, "{}"))
		answered <- resp.StatusCode
	}()
	if d := <-srv.Received(); d.Status != 0 {
		t.Fatalf("held request recorded with status %d", d.Status)
	}
	close(gate)
	if code := <-answered; code != 202 {
		t.Fatalf("released with %d", code)
	}
	errc := make(chan error)
	go func() {
		_, err := c.Do(validRequest(t, v, sub, "{}"))
		errc <- err
	}()
	<-srv.Received()
	srv.Close() // releases the hanging request without an answer
	if err := <-errc; err == nil {
		t.Fatal("hanging request answered")
	}
}

func TestInProcessTransportServesOnlyItsServer(t *testing.T) {
	srv := pushtest.NewInProcess()
	defer srv.Close()
	_, err := srv.Client().Get("http://example.com/")
	if err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("err %v", err)
	}
	var ue interface{ Unwrap() error }
	if !errors.As(err, &ue) {
		t.Fatalf("err %T", err)
	}
}

func TestNewSubscriptionIsValid(t *testing.T) {
	srv := pushtest.New()
	defer srv.Close()
	sub, err := srv.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	if err := push.ValidateSubscription(sub, true); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sub.Endpoint, srv.URL+"/push/") {
		t.Fatalf("endpoint %s", sub.Endpoint)
	}
}

func FuzzDecrypt(f *testing.F) {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 120))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := pushtest.Decrypt(body, ua, auth); err == nil {
			t.Fatal("random bytes decrypted")
		}
	})
}
