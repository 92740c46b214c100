package push_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		secure   bool // accepted without allowInsecure
		insecure bool // accepted with allowInsecure
	}{
		{"https://fcm.googleapis.com/fcm/send/abc:def", true, true},
		{"https://updates.push.services.mozilla.com/wpush/v2/gAAA", true, true},
		{"https://web.push.apple.com:443/QGx", true, true},
		{"https://8.8.8.8/push", true, true},
		{"https://[2001:4860:4860::8888]/push", true, true},
		{"http://push.example/x", false, true},
		{"http://127.0.0.1:8080/push/1", false, true},
		{"https://127.0.0.1/push", false, true},
		{"https://10.1.2.3/push", false, true},
		{"https://172.16.0.1/push", false, true},
		{"https://192.168.1.1/push", false, true},
		{"https://169.254.169.254/latest/meta-data", false, true},
		{"https://100.64.0.1/", false, true},
		{"https://0.0.0.0/", false, true},
		{"https://224.0.0.1/", false, true},
		{"https://255.255.255.255/", false, true},
		{"https://[::1]/push", false, true},
		{"https://[::]/push", false, true},
		{"https://[fe80::1]/push", false, true},
		{"https://[fc00::1]/push", false, true},
		{"https://[::ffff:127.0.0.1]/push", false, true},
		{"https://[::ffff:10.0.0.1]/push", false, true},
		{"https://localhost/push", false, true},
		{"https://LOCALHOST./push", false, true},
		{"https://a.localhost/push", false, true},
		{"", false, false},
		{"push.example/x", false, false},
		{"ftp://push.example/x", false, false},
		{"https:///x", false, false},
		{"https:opaque", false, false},
		{"https://user:pw@push.example/x", false, false},
		{"https://push.example/x#frag", false, false},
		{"https://push.example/" + strings.Repeat("a", 3000), false, false},
		{"https://push.example/%zz", false, false},
	} {
		for _, insecure := range []bool{false, true} {
			want := tc.secure
			if insecure {
				want = tc.insecure
			}
			err := push.CheckEndpoint(tc.endpoint, insecure)
			if (err == nil) != want {
				t.Errorf("CheckEndpoint(%.60q, %v) = %v, want ok=%v", tc.endpoint, insecure, err, want)
			}
			var fe *push.FieldError
			if err != nil && (!errors.As(err, &fe) || fe.Field != "push_subscription.endpoint" ||
				!strings.HasPrefix(err.Error(), "push_subscription.endpoint: ") || !errors.Is(err, push.ErrInvalidSubscription)) {
				t.Errorf("CheckEndpoint(%.60q): error %v does not name the field", tc.endpoint, err)
			}
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func validSub(t testing.TB) store.PushSubscription {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var s store.PushSubscription
	s.Endpoint = "https://push.example/send/abc"
	s.Keys.P256dh = b64(k.PublicKey().Bytes())
	s.Keys.Auth = b64(make([]byte, 16))
	return s
}

func TestValidateSubscription(t *testing.T) {
	good := validSub(t)
	if err := push.ValidateSubscription(good, false); err != nil {
		t.Fatal(err)
	}
	point, _ := base64.RawURLEncoding.DecodeString(good.Keys.P256dh)
	offCurve := append([]byte{}, point...)
	offCurve[64] ^= 1
	compressed := append([]byte{2 + point[64]&1}, point[1:33]...)
	const fp, fa, fe = "push_subscription.keys.p256dh", "push_subscription.keys.auth", "push_subscription.endpoint"
	for _, tc := range []struct {
		name  string
		edit  func(*store.PushSubscription)
		field string
		msg   string
	}{
		{"padded base64url is fine", func(s *store.PushSubscription) { s.Keys.P256dh += "="; s.Keys.Auth += "==" }, "", ""},
		{"http endpoint", func(s *store.PushSubscription) { s.Endpoint = "http://push.example/x" }, fe, "https"},
		{"no p256dh", func(s *store.PushSubscription) { s.Keys.P256dh = "" }, fp, "required"},
		{"p256dh not base64url", func(s *store.PushSubscription) { s.Keys.P256dh = "a+b/" + s.Keys.P256dh[4:] }, fp, "base64url"},
		{"p256dh too short", func(s *store.PushSubscription) { s.Keys.P256dh = b64(point[:64]) }, fp, "65 bytes"},
		{"p256dh compressed", func(s *store.PushSubscription) { s.Keys.P256dh = b64(compressed) }, fp, "uncompressed"},
		{"p256dh off the curve", func(s *store.PushSubscription) { s.Keys.P256dh = b64(offCurve) }, fp, "curve"},
		{"p256dh huge", func(s *store.PushSubscription) { s.Keys.P256dh = strings.Repeat("A", 1<<20) }, fp, "too long"},
		{"no auth", func(s *store.PushSubscription) { s.Keys.Auth = "" }, fa, "required"},
		{"auth 15 bytes", func(s *store.PushSubscription) { s.Keys.Auth = b64(make([]byte, 15)) }, fa, "16 bytes"},
		{"auth 32 bytes", func(s *store.PushSubscription) { s.Keys.Auth = b64(make([]byte, 32)) }, fa, "16 bytes"},
		{"auth not base64url", func(s *store.PushSubscription) { s.Keys.Auth = "!!!!" }, fa, "base64url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			err := push.ValidateSubscription(s, false)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *push.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("err %v, want field %s and %q", err, tc.field, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Errorf("Error() %q does not start with the field", err)
			}
		})
	}
}

func FuzzValidateSubscription(f *testing.F) {
	g := validSub(f)
	f.Add(g.Endpoint, g.Keys.P256dh, g.Keys.Auth)
	f.Add("http://127.0.0.1/x", "BAAA", "AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, endpoint, p256dh, auth string) {
		var s store.PushSubscription
		s.Endpoint, s.Keys.P256dh, s.Keys.Auth = endpoint, p256dh, auth
		err := push.ValidateSubscription(s, false)
		if err == nil {
			u, perr := url.Parse(endpoint)
			if perr != nil || u.Scheme != "https" || u.Host == "" {
				t.Fatalf("accepted endpoint %q", endpoint)
			}
			p, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(p256dh, "="))
			if _, kerr := ecdh.P256().NewPublicKey(p); kerr != nil || len(p) != 65 {
				t.Fatalf("accepted p256dh %q", p256dh)
			}
			return
		}
		var fe *push.FieldError
		if !errors.As(err, &fe) || fe.Field == "" || fe.Msg == "" {
			t.Fatalf("error %v is not a FieldError", err)
		}
	})
}

// The guard acts at connect time, on the address actually dialled.
func TestClientRefusesNonPublicAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/insecure" {
			t.Error("the guarded client reached a loopback server")
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := push.NewHTTPClient(false)
	defer c.CloseIdleConnections()
	for _, host := range []string{
		"127.0.0.1",
		"localhost", // a name that resolves to loopback: only the dialer can tell
		"[::ffff:127.0.0.1]",
		"0.0.0.0", // reaches the local host on Linux
	} {
		resp, err := c.Post("http://"+host+":"+port+"/push/x", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: reached", host)
			continue
		}
		if !errors.Is(err, push.ErrBlockedAddress) {
			t.Errorf("%s: err %v, want ErrBlockedAddress", host, err)
		}
	}
	// The insecure client reaches it.
	ok := push.NewHTTPClient(true)
	defer ok.CloseIdleConnections()
	resp, err := ok.Get(srv.URL + "/insecure")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// A Sender with the default client refuses a push service on loopback even
// under a name that passes CheckEndpoint's literal checks, and does not retry.
func TestSenderGuardedByDefault(t *testing.T) {
	insecure := newEnv(t) // only to get a subscription and keys
	sub := insecure.sub(t)
	u, _ := url.Parse(sub.Endpoint)
	sub.Endpoint = "http://localhost:" + u.Port() + u.Path
	s, err := push.NewSender(push.Config{VAPIDPublicKey: insecure.keys.Public, VAPIDPrivateKey: insecure.keys.Private, Subject: subject}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), sub, "", wake("d"))
	if !errors.Is(err, push.ErrBlockedAddress) || errors.Is(err, push.ErrRetryable) {
		t.Fatalf("err %v, want ErrBlockedAddress, not retryable", err)
	}
	if n := insecure.srv.Stats().Requests; n != 0 {
		t.Fatalf("%d requests reached the push service", n)
	}
}

func TestClientSpeaksHTTP2AndDoesNotRedirect(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := push.NewHTTPClient(true)
	defer c.CloseIdleConnections()
	if c.Timeout <= 0 {
		t.Error("client without timeout")
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
	resp, err := c.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" {
		t.Errorf("spoke %s", resp.Proto)
	}
	resp, err = c.Get(srv.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("redirect followed: %d", resp.StatusCode)
	}
}
