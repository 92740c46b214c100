package push

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wakeline/wakeline/store"
)

// GenerateVAPIDKeys makes a fresh VAPID key pair: the uncompressed P-256
// public point and the private scalar, base64url without padding (the form
// browsers take as applicationServerKey).
func GenerateVAPIDKeys() (store.VAPIDKeys, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return store.VAPIDKeys{}, fmt.Errorf("push: generating VAPID keys: %w", err)
	}
	return store.VAPIDKeys{
		Public:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Private: base64.RawURLEncoding.EncodeToString(k.Bytes()),
	}, nil
}

// VAPIDSnippet is the YAML printed by `wakeline vapid`, ready to paste into
// the config. The subject is a placeholder to replace: the config requires
// one with keys, and push services use it to reach the operator.
func VAPIDSnippet(k store.VAPIDKeys) string {
	return "push:\n" +
		"  vapid_public_key: \"" + k.Public + "\"\n" +
		"  vapid_private_key: \"" + k.Private + "\"\n" +
		"  subject: \"mailto:ops@example.com\" # your contact: mailto: or https:\n"
}

// decodeB64URL decodes base64url with or without padding.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// vapidKeys checks a configured key pair and returns it re-encoded as
// unpadded base64url, the one form every decoder accepts.
func vapidKeys(pub, priv string) (pubOut, privOut string, err error) {
	if pub == "" || priv == "" {
		return "", "", configErr("vapid_public_key and vapid_private_key are required")
	}
	pb, err := decodeB64URL(pub)
	if err != nil {
		return "", "", configErr("vapid_public_key: not base64url")
	}
	if _, err := ecdh.P256().NewPublicKey(pb); err != nil || len(pb) != 65 {
		return "", "", configErr("vapid_public_key: not an uncompressed P-256 point")
	}
	kb, err := decodeB64URL(priv)
	if err != nil {
		return "", "", configErr("vapid_private_key: not base64url")
	}
	k, err := ecdh.P256().NewPrivateKey(kb)
	if err != nil {
		return "", "", configErr("vapid_private_key: not a P-256 private key")
	}
	if !bytes.Equal(k.PublicKey().Bytes(), pb) {
		return "", "", configErr("vapid_private_key does not match vapid_public_key")
	}
	return base64.RawURLEncoding.EncodeToString(pb), base64.RawURLEncoding.EncodeToString(kb), nil
}

// checkSubject normalizes the configured subject: one mailto: address or
// https: URL, the scheme in lower case. (webpush-go would have turned
// "mailto:ops@example.com" into "mailto:mailto:ops@example.com"; we sign
// the subject as configured.)
func checkSubject(subject string) (string, error) {
	s := strings.TrimSpace(subject)
	if s == "" {
		return "", configErr("subject is required (mailto: or https: URI)")
	}
	if strings.ContainsAny(s, " \t\r\n,") {
		return "", configErr("subject must be a single mailto: or https: URI")
	}
	scheme, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && strings.EqualFold(scheme, "mailto"):
		if !strings.Contains(rest, "@") || strings.Contains(rest, ":") {
			return "", configErr("subject: %q is not a mailto: address", s)
		}
		return "mailto:" + rest, nil
	case ok && strings.EqualFold(scheme, "https"):
		if !strings.HasPrefix(rest, "//") || len(rest) <= 2 {
			return "", configErr("subject: %q is not an https: URL", s)
		}
		return "https:" + rest, nil
	}
	return "", configErr("subject: %q must start with mailto: or https:", s)
}

// A VAPID JWT says it expires vapidTokenLife after signing (push services
// refuse more than 24 hours); one signed header is reused for an audience
// for vapidReuse, so a token is never sent with less than 11 hours left.
// Signing per message would cost an ECDSA signature each time, and push
// services cache verified tokens too.
const (
	vapidTokenLife = 12 * time.Hour
	vapidReuse     = time.Hour
	// maxAudiences bounds the cache: there are a handful of push services,
	// but endpoints come from clients.
	maxAudiences = 1024
)

// signer makes VAPID Authorization headers (RFC 8292). Safe for concurrent
// use.
type signer struct {
	key     *ecdsa.PrivateKey
	k       string // the public key, unpadded base64url
	subject string

	mu    sync.Mutex
	cache map[string]signedHeader // by audience
}

type signedHeader struct {
	value  string
	signed time.Time
}

func newSigner(pub, priv, subject string) (*signer, error) {
	kb, err := decodeB64URL(priv)
	if err != nil {
		return nil, configErr("vapid_private_key: not base64url")
	}
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), kb)
	if err != nil {
		return nil, configErr("vapid_private_key: not a P-256 private key")
	}
	return &signer{key: key, k: pub, subject: subject, cache: map[string]signedHeader{}}, nil
}

// authorization returns the header for a push service origin
// ("https://push.example").
func (v *signer) authorization(aud string, now time.Time) (string, error) {
	v.mu.Lock()
	h, ok := v.cache[aud]
	v.mu.Unlock()
	// A clock that went backwards makes a cached token look too long-lived.
	if ok && !now.Before(h.signed) && now.Sub(h.signed) < vapidReuse {
		return h.value, nil
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": aud,
		"exp": now.Add(vapidTokenLife).Unix(),
		"sub": v.subject,
	})
	t, err := tok.SignedString(v.key)
	if err != nil {
		return "", fmt.Errorf("push: signing VAPID token: %w", err)
	}
	h = signedHeader{value: "vapid t=" + t + ", k=" + v.k, signed: now}
	v.mu.Lock()
	if len(v.cache) >= maxAudiences {
		clear(v.cache)
	}
	v.cache[aud] = h
	v.mu.Unlock()
	return h.value, nil
}
