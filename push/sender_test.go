package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/push/pushtest"
)

func TestSendDeliversEncryptedSignedMessage(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	msg := push.Message{Device: "dev1", Upstream: "news", Pending: 3, LastEventID: "44"}
	topic := push.Topic("dev1", "news")
	if err := e.sender.Send(t.Context(), sub, topic, msg); err != nil {
		t.Fatal(err)
	}
	d := e.next(t)
	if d.Err != nil || d.Status != http.StatusCreated {
		t.Fatalf("push service refused: %d %v", d.Status, d.Err)
	}
	want := `{"type":"wakeline.wake","device":"dev1","upstream":"news","pending":3,"last_event_id":"44"}`
	if string(d.Payload) != want {
		t.Errorf("payload %s, want %s", d.Payload, want)
	}
	msg.Type = push.WakeType
	if d.Msg != msg {
		t.Errorf("message %+v, want %+v", d.Msg, msg)
	}
	for h, want := range map[string]string{
		"Content-Encoding": "aes128gcm",
		"TTL":              "300", // the default 5m; webpush-go would send 0 if told nothing
		"Urgency":          "high",
		"Topic":            topic,
	} {
		if got := d.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	// webpush-go prepends mailto: to any subject not starting with https:.
	if d.Subject != subject {
		t.Errorf("VAPID sub %q, want %q", d.Subject, subject)
	}
	if d.VAPIDKey != e.keys.Public {
		t.Errorf("VAPID k %q, want the configured public key", d.VAPIDKey)
	}
	if left := time.Until(d.Expires); left <= time.Hour || left > 24*time.Hour {
		t.Errorf("VAPID exp in %v", left)
	}
	// webpush-go pads every message to its record size, 4096 by default.
	if d.BodyLen > 512 {
		t.Errorf("body of %d bytes for a %d-byte payload", d.BodyLen, len(d.Payload))
	}
}

func TestSendRecordSizeIsSmall(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	msg := wake("d")
	msg.LastEventID = strings.Repeat("x", 100-len(`{"type":"wakeline.wake","device":"d","upstream":"news","pending":3,"last_event_id":""}`))
	if err := e.sender.Send(t.Context(), sub, "", msg); err != nil {
		t.Fatal(err)
	}
	d := e.next(t)
	if len(d.Payload) != 100 {
		t.Fatalf("payload %d bytes, want 100", len(d.Payload))
	}
	if d.BodyLen >= 300 {
		t.Errorf("body %d bytes for a 100-byte payload; want the record close to the payload", d.BodyLen)
	}
	if d.Header.Get("Topic") != "" {
		t.Errorf("Topic %q sent though none was given", d.Header.Get("Topic"))
	}
}

func TestSendConfig(t *testing.T) {
	for _, tc := range []struct {
		name             string
		cfg              func(*push.Config)
		ttl, urgency, sb string
	}{
		{"defaults", func(*push.Config) {}, "300", "high", subject},
		{"sub-second TTL rounds up", func(c *push.Config) { c.TTL = 1500 * time.Millisecond }, "2", "high", subject},
		{"tiny TTL is never 0", func(c *push.Config) { c.TTL = time.Millisecond }, "1", "high", subject},
		{"urgency", func(c *push.Config) { c.Urgency = "very-low"; c.TTL = time.Hour }, "3600", "very-low", subject},
		{"https subject", func(c *push.Config) { c.Subject = "https://ops.example.com/contact" }, "300", "high", "https://ops.example.com/contact"},
		{"upper-case scheme", func(c *push.Config) { c.Subject = "MAILTO:ops@example.com" }, "300", "high", "mailto:ops@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			if err := e.sender.Send(t.Context(), e.sub(t), "", wake("d")); err != nil {
				t.Fatal(err)
			}
			d := e.next(t)
			if got := d.Header.Get("TTL"); got != tc.ttl {
				t.Errorf("TTL %q, want %q", got, tc.ttl)
			}
			if got := d.Header.Get("Urgency"); got != tc.urgency {
				t.Errorf("Urgency %q, want %q", got, tc.urgency)
			}
			if d.Subject != tc.sb {
				t.Errorf("sub %q, want %q", d.Subject, tc.sb)
			}
		})
	}
}

func TestNewSenderRefusesBadConfig(t *testing.T) {
	keys, _ := push.GenerateVAPIDKeys()
	other, _ := push.GenerateVAPIDKeys()
	good := push.Config{VAPIDPublicKey: keys.Public, VAPIDPrivateKey: keys.Private, Subject: subject}
	for _, tc := range []struct {
		name string
		cfg  func(*push.Config)
		want string
	}{
		{"no keys", func(c *push.Config) { c.VAPIDPublicKey, c.VAPIDPrivateKey = "", "" }, "required"},
		{"public not base64url", func(c *push.Config) { c.VAPIDPublicKey = "!!" }, "vapid_public_key"},
		{"public too short", func(c *push.Config) { c.VAPIDPublicKey = keys.Public[:40] }, "vapid_public_key"},
		{"private not a key", func(c *push.Config) { c.VAPIDPrivateKey = "AAAA" }, "vapid_private_key"},
		{"mismatched pair", func(c *push.Config) { c.VAPIDPrivateKey = other.Private }, "does not match"},
		{"no subject", func(c *push.Config) { c.Subject = "" }, "subject is required"},
		{"bare address", func(c *push.Config) { c.Subject = "ops@example.com" }, "must start with mailto: or https:"},
		{"doubled mailto", func(c *push.Config) { c.Subject = "mailto:mailto:ops@example.com" }, "not a mailto: address"},
		{"mailto without address", func(c *push.Config) { c.Subject = "mailto:" }, "not a mailto: address"},
		{"http subject", func(c *push.Config) { c.Subject = "http://example.com" }, "must start with"},
		{"two URIs", func(c *push.Config) { c.Subject = "mailto:a@b.c, mailto:d@e.f" }, "single"},
		{"negative TTL", func(c *push.Config) { c.TTL = -time.Second }, "ttl"},
		{"huge TTL", func(c *push.Config) { c.TTL = 30 * 24 * time.Hour }, "ttl"},
		{"bad urgency", func(c *push.Config) { c.Urgency = "urgent" }, "urgency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.cfg(&cfg)
			_, err := push.NewSender(cfg, nil, nil)
			if !errors.Is(err, push.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), keys.Private) {
				t.Fatal("error shows the private key")
			}
		})
	}
	padded := good
	padded.VAPIDPublicKey += "=" // base64url with padding is accepted too
	if _, err := push.NewSender(padded, nil, nil); err != nil {
		t.Fatalf("padded key: %v", err)
	}
}

func TestSendAnswers(t *testing.T) {
	for _, tc := range []struct {
		answer pushtest.Answer
		is     error
		retry  time.Duration
	}{
		{pushtest.Answer{Status: 404}, push.ErrGone, 0},
		{pushtest.Answer{Status: 410, Body: "subscription expired"}, push.ErrGone, 0},
		{pushtest.Answer{Status: 400, Body: "bad\x00 request\n"}, push.ErrRejected, 0},
		{pushtest.Answer{Status: 401}, push.ErrRejected, 0},
		{pushtest.Answer{Status: 403}, push.ErrRejected, 0},
		{pushtest.Answer{Status: 429, RetryAfter: "7"}, push.ErrRetryable, 7 * time.Second},
		{pushtest.Answer{Status: 429, RetryAfter: "soon"}, push.ErrRetryable, 0},
		{pushtest.Answer{Status: 500}, push.ErrRetryable, 0},
		{pushtest.Answer{Status: 503, RetryAfter: "120"}, push.ErrRetryable, 2 * time.Minute},
	} {
		t.Run(http.StatusText(tc.answer.Status), func(t *testing.T) {
			e := newEnv(t)
			sub := e.sub(t)
			e.script(t, sub, tc.answer)
			err := e.sender.Send(t.Context(), sub, "", wake("d"))
			var se *push.StatusError
			if !errors.As(err, &se) || se.Code != tc.answer.Status {
				t.Fatalf("err %v, want a StatusError %d", err, tc.answer.Status)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("err %v is not %v", err, tc.is)
			}
			for _, other := range []error{push.ErrGone, push.ErrRejected, push.ErrRetryable, push.ErrTooLarge} {
				if other != tc.is && errors.Is(err, other) {
					t.Errorf("err %v is also %v", err, other)
				}
			}
			if se.RetryAfter != tc.retry {
				t.Errorf("RetryAfter %v, want %v", se.RetryAfter, tc.retry)
			}
			if strings.ContainsAny(se.Reason, "\x00\n") {
				t.Errorf("reason %q not sanitized", se.Reason)
			}
			if d := e.next(t); d.Err != nil || d.Status != tc.answer.Status {
				t.Errorf("push service saw %d %v", d.Status, d.Err)
			}
			e.none(t) // Send itself never retries these
		})
	}
}

func TestSendRetryAfterDate(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Status: 503, RetryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
	err := e.sender.Send(t.Context(), sub, "", wake("d"))
	var se *push.StatusError
	if !errors.As(err, &se) || se.RetryAfter < 59*time.Minute || se.RetryAfter > time.Hour {
		t.Fatalf("err %v, want a RetryAfter of about an hour", err)
	}
}

func TestSend413RetriesOnceWithoutOptionalFields(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Status: 413})
	if err := e.sender.Send(t.Context(), sub, "", wake("dev1")); err != nil {
		t.Fatal(err)
	}
	if d := e.next(t); d.Status != 413 || d.Msg.LastEventID != "44" {
		t.Fatalf("first attempt: %d %s", d.Status, d.Payload)
	}
	d := e.next(t)
	if d.Status != 201 || string(d.Payload) != `{"type":"wakeline.wake","device":"dev1","upstream":"news"}` {
		t.Fatalf("second attempt: %d %s", d.Status, d.Payload)
	}
	e.none(t)
}

func TestSend413Twice(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Status: 413}, pushtest.Answer{Status: 413})
	err := e.sender.Send(t.Context(), sub, "", wake("dev1"))
	var se *push.StatusError
	if !errors.Is(err, push.ErrTooLarge) || !errors.As(err, &se) || se.Code != 413 {
		t.Fatalf("err %v, want a 413 StatusError and ErrTooLarge", err)
	}
	e.next(t)
	e.next(t)
	e.none(t)
}

func TestSendOversizedMessage(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	// An origin's event id can be long: the message goes without it.
	msg := wake("dev1")
	msg.LastEventID = strings.Repeat("x", 5000)
	if err := e.sender.Send(t.Context(), sub, "", msg); err != nil {
		t.Fatal(err)
	}
	if d := e.next(t); d.Msg.LastEventID != "" || d.Msg.Device != "dev1" || d.BodyLen > 512 {
		t.Fatalf("sent %s in %d bytes", d.Payload, d.BodyLen)
	}
	// Required fields that cannot fit: nothing is sent.
	msg.Device = strings.Repeat("d", 5000)
	if err := e.sender.Send(t.Context(), sub, "", msg); !errors.Is(err, push.ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	e.none(t)
}

func TestSendHangingPushService(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Hang: true})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- e.sender.Send(ctx, sub, "", wake("d")) }()
	e.next(t) // the request is held
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || errors.Is(err, push.ErrRetryable) {
		t.Fatalf("err %v, want context.Canceled and not retryable", err)
	}
}

func TestSendRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	bad := sub
	bad.Keys.P256dh = bad.Keys.P256dh[:20]
	var fe *push.FieldError
	if err := e.sender.Send(t.Context(), bad, "", wake("d")); !errors.As(err, &fe) || fe.Field != "push_subscription.keys.p256dh" {
		t.Errorf("bad key: err %v", err)
	}
	if err := e.sender.Send(t.Context(), sub, "not/a+topic", wake("d")); err == nil {
		t.Error("bad topic accepted")
	}
	if err := e.sender.Send(t.Context(), sub, strings.Repeat("a", 33), wake("d")); err == nil {
		t.Error("33-character topic accepted")
	}
	e.none(t)
}

func TestSendUnreachable(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.srv.Close() // nothing listens on the port any more
	err := e.sender.Send(t.Context(), sub, "", wake("d"))
	if !errors.Is(err, push.ErrRetryable) {
		t.Fatalf("err %v, want a retryable transport error", err)
	}
	var se *push.StatusError
	if errors.As(err, &se) {
		t.Fatalf("transport error reported as a status: %v", err)
	}
	if strings.Contains(err.Error(), "/push/") {
		t.Fatalf("error shows the endpoint's path: %v", err)
	}
}

// 400, 401 and 403 are logged once, with the reason and without the endpoint.
func TestSendLogsRejection(t *testing.T) {
	var buf bytes.Buffer
	srv := pushtest.New()
	t.Cleanup(srv.Close)
	e := newEnvWith(t, srv, push.NewHTTPClient(true))
	s, err := push.NewSender(push.Config{VAPIDPublicKey: e.keys.Public, VAPIDPrivateKey: e.keys.Private, Subject: subject},
		e.client, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Status: 403, Body: "key mismatch"}, pushtest.Answer{Status: 410})
	if err := s.Send(t.Context(), sub, "", wake("d")); !errors.Is(err, push.ErrRejected) {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), sub, "", wake("d")); !errors.Is(err, push.ErrGone) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "code=403") || !strings.Contains(lines[0], "key mismatch") {
		t.Fatalf("log:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "/push/") || strings.Contains(buf.String(), sub.Keys.Auth) {
		t.Fatalf("log shows the endpoint or keys:\n%s", buf.String())
	}
}

func TestSendRedirectIsNotFollowed(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Status: http.StatusTemporaryRedirect})
	err := e.sender.Send(t.Context(), sub, "", wake("d"))
	var se *push.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTemporaryRedirect {
		t.Fatalf("err %v, want the 307 itself", err)
	}
	for _, s := range []error{push.ErrGone, push.ErrRejected, push.ErrRetryable, push.ErrTooLarge} {
		if errors.Is(err, s) {
			t.Errorf("a 307 is %v", s)
		}
	}
}

func TestTopic(t *testing.T) {
	a := push.Topic("dev1", "news")
	if a != push.Topic("dev1", "news") {
		t.Fatal("topic not stable")
	}
	seen := map[string]bool{}
	for _, p := range [][2]string{{"dev1", "news"}, {"dev2", "news"}, {"dev1", "sport"}, {"ab", "c"}, {"a", "bc"}, {"", ""}} {
		tp := push.Topic(p[0], p[1])
		if len(tp) == 0 || len(tp) > 32 || strings.Trim(tp, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Errorf("topic %q", tp)
		}
		if seen[tp] {
			t.Errorf("topic %q repeats for %v", tp, p)
		}
		seen[tp] = true
	}
}

func TestMessageJSON(t *testing.T) {
	b, err := json.Marshal(push.Message{Type: push.WakeType, Device: "d", Upstream: "u", Pending: 0})
	if err != nil || string(b) != `{"type":"wakeline.wake","device":"d","upstream":"u","pending":0,"last_event_id":""}` {
		t.Fatalf("%s %v", b, err)
	}
}
