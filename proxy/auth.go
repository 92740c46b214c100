package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// A device token is "<device id>.<secret>", the secret 256 random bits. The
// id part lets the gateway tell "bad credentials" (401) from "not yours"
// (404) without an index from tokens to devices; only a SHA-256 of the whole
// token is stored. A fast hash is enough: the secret has full entropy.

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newToken(deviceID string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return deviceID + "." + base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// tokenMatches compares in constant time.
func tokenMatches(token string, hash []byte) bool {
	return subtle.ConstantTimeCompare(hashToken(token), hash) == 1
}

// bearer returns the bearer token of r, or the access_token query parameter
// when allowQuery (device credentials: a browser EventSource cannot set
// headers, INTERFACE.md allows it for every device operation).
func bearer(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// tokenDevice returns the device id a token claims to be for.
func tokenDevice(token string) (string, bool) {
	id, secret, ok := strings.Cut(token, ".")
	return id, ok && id != "" && secret != ""
}

// registrationAuth checks registration tokens, hashed at start so the
// comparison runs in constant time over equal-length values.
type registrationAuth [][]byte

func newRegistrationAuth(tokens []string) registrationAuth {
	var a registrationAuth
	for _, t := range tokens {
		if t != "" {
			a = append(a, hashToken(t))
		}
	}
	return a
}

func (a registrationAuth) allows(token string) bool {
	if token == "" {
		return false
	}
	ok := 0
	for _, h := range a {
		ok |= subtle.ConstantTimeCompare(hashToken(token), h)
	}
	return ok == 1
}
