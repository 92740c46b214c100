package push

// White-box tests: the RFC 8291 test vector needs seal's random inputs
// fixed, and the VAPID cache its clock.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 8291 Appendix A.
func TestSealMatchesRFC8291Example(t *testing.T) {
	ua, err := ecdh.P256().NewPublicKey(mustB64(t, "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"))
	if err != nil {
		t.Fatal(err)
	}
	as, err := ecdh.P256().NewPrivateKey(mustB64(t, "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("When I grow up, I want to be a watermelon")
	kept := bytes.Clone(payload)
	got, err := sealWith(payload[:len(payload):len(payload)], ua, mustB64(t, "BTBZMqHH6r4Tts7J_aSIgg"), as, mustB64(t, "DGv6ra1nlYgDCS1FRnbzlw"), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
	if b := base64.RawURLEncoding.EncodeToString(got); b != want {
		t.Fatalf("body\n%s\nwant\n%s", b, want)
	}
	if !bytes.Equal(payload, kept) {
		t.Fatal("payload modified")
	}
}

// webpush-go writes its padding into the spare capacity of the message it is
// given; seal must not.
func TestSealLeavesCallerSliceAlone(t *testing.T) {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	buf := bytes.Repeat([]byte{0xAA}, 256)
	body, err := seal(buf[:20], k.PublicKey(), make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xAA}, 256)) {
		t.Fatal("seal wrote into the caller's slice")
	}
	if len(body) != 128 {
		t.Fatalf("body %d bytes for 20 bytes of payload, want 128", len(body))
	}
	if _, err := seal(make([]byte, maxPayload+1), k.PublicKey(), make([]byte, 16)); err == nil {
		t.Fatal("oversized payload sealed")
	}
}

func TestPadding(t *testing.T) {
	for n, body := range map[int]int{0: 128, 25: 128, 26: 192, 100: 256, maxPayload: 4096} {
		if got := n + recordOverhead + padding(n); got != body {
			t.Errorf("payload %d: body %d, want %d", n, got, body)
		}
	}
}

func TestSignerReusesHeaderPerAudience(t *testing.T) {
	keys, _ := GenerateVAPIDKeys()
	v, err := newSigner(keys.Public, keys.Private, "mailto:a@b.c")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a1, _ := v.authorization("https://a.example", now)
	a2, _ := v.authorization("https://a.example", now.Add(vapidReuse-time.Second))
	b1, _ := v.authorization("https://b.example", now)
	a3, _ := v.authorization("https://a.example", now.Add(vapidReuse))
	aBack, _ := v.authorization("https://a.example", now.Add(-time.Minute)) // the clock went back
	if a1 != a2 || a1 == b1 || a1 == a3 || aBack == a3 {
		t.Fatal("header not reused for an hour per audience, or reused across audiences")
	}
	tok, _ := strings.CutPrefix(a3, "vapid t=")
	tok, k, _ := strings.Cut(tok, ", k=")
	if k != keys.Public {
		t.Fatalf("k %q", k)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	exp, _ := claims.GetExpirationTime()
	if claims["aud"] != "https://a.example" || claims["sub"] != "mailto:a@b.c" || !exp.Equal(now.Add(vapidReuse+vapidTokenLife)) {
		t.Fatalf("claims %v", claims)
	}
	for i := range maxAudiences + 10 {
		if _, err := v.authorization("https://push"+strconv.Itoa(i)+".example", now); err != nil {
			t.Fatal(err)
		}
	}
	if len(v.cache) > maxAudiences {
		t.Fatalf("cache holds %d audiences", len(v.cache))
	}
}

func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "7", "-1", "99999999999999999999", "Thu, 01 Jan 2026 00:01:00 GMT", "soon", " 12 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %v", v, d)
		}
	})
}
