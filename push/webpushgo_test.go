package push_test

// These tests pin the traps of webpush-go v1.4.0's SendNotification, which
// package push does not call (see Sender): they say why, and they show that
// pushtest, our oracle, decrypts and verifies a third party's messages. If
// one fails after an upgrade, webpush-go changed: re-read webpush.go and
// vapid.go and reconsider using it.

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/wakeline/wakeline/push/pushtest"
)

func TestWebpushGoTraps(t *testing.T) {
	e := newEnv(t)
	sub := e.sub(t)
	ws := &webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{Auth: sub.Keys.Auth, P256dh: sub.Keys.P256dh}}
	send := func(msg []byte, o webpush.Options) (*http.Response, pushtest.Delivery) {
		t.Helper()
		o.HTTPClient, o.VAPIDPublicKey, o.VAPIDPrivateKey = e.client, e.keys.Public, e.keys.Private
		resp, err := webpush.SendNotificationWithContext(t.Context(), msg, ws, &o)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp, e.next(t)
	}

	// TTL: 0 unless told otherwise.
	_, d := send([]byte("x"), webpush.Options{Subscriber: "ops@example.com"})
	if d.Header.Get("TTL") != "0" {
		t.Errorf("TTL %q: webpush-go no longer defaults to 0", d.Header.Get("TTL"))
	}
	// Padding to 4096 bytes unless RecordSize is set.
	if d.BodyLen != 4096 {
		t.Errorf("body %d bytes: webpush-go no longer pads to 4096 by default", d.BodyLen)
	}
	// A bare address becomes mailto:...
	if d.Subject != "mailto:ops@example.com" {
		t.Errorf("sub %q from a bare address", d.Subject)
	}
	// ... and a mailto: one mailto:mailto:..., which a push service refuses;
	// webpush-go returns that refusal with a nil error.
	resp, d := send([]byte("x"), webpush.Options{Subscriber: "mailto:ops@example.com", TTL: 60})
	if d.Err == nil || !strings.Contains(d.Err.Error(), "mailto:mailto:") || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("doubled mailto: answer %d, push service error %v", resp.StatusCode, d.Err)
	}
	// It appends the padding into the spare capacity of the caller's slice.
	buf := bytes.Repeat([]byte{0xAA}, 64)
	send(buf[:10], webpush.Options{Subscriber: "ops@example.com", TTL: 60, RecordSize: 128})
	if bytes.Equal(buf[10:], bytes.Repeat([]byte{0xAA}, 54)) {
		t.Error("webpush-go no longer writes into the caller's spare capacity")
	}
}
