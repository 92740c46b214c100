package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// vapid is what a verified VAPID Authorization header says.
type vapid struct {
	Key      string // the k parameter
	Audience string
	Subject  string
	Expires  time.Time
}

// parseAuthorization splits `vapid t=<jwt>, k=<key>` (RFC 8292 section 3).
func parseAuthorization(h string) (token, key string, err error) {
	scheme, params, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "vapid") {
		return "", "", errors.New("authorization: not the vapid scheme")
	}
	for p := range strings.SplitSeq(params, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return "", "", fmt.Errorf("authorization: bad parameter %q", p)
		}
		switch strings.ToLower(name) {
		case "t":
			token = value
		case "k":
			key = value
		}
	}
	if token == "" || key == "" {
		return "", "", errors.New("authorization: t and k are both required")
	}
	return token, key, nil
}

// verifyVAPID checks the JWT of a VAPID header as a push service does: an
// ES256 signature by the k key, aud equal to the endpoint's origin, exp in
// the future and at most 24 hours away, sub one mailto: or https: URI.
func verifyVAPID(header, origin string, now time.Time) (vapid, error) {
	token, k, err := parseAuthorization(header)
	if err != nil {
		return vapid{}, err
	}
	kb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k, "="))
	if err != nil {
		return vapid{}, errors.New("vapid: k is not base64url")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), kb)
	if err != nil {
		return vapid{}, fmt.Errorf("vapid: k is not a P-256 public key: %w", err)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return vapid{}, errors.New("vapid: t is not a JWS compact serialization")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "ES256" {
		return vapid{}, fmt.Errorf("vapid: JWT header must say alg ES256 (got %q)", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return vapid{}, errors.New("vapid: JWT signature must be 64 bytes of r||s")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return vapid{}, errors.New("vapid: JWT signature does not verify against k")
	}
	var claims struct {
		Aud *string  `json:"aud"`
		Exp *float64 `json:"exp"`
		Sub *string  `json:"sub"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return vapid{}, fmt.Errorf("vapid: JWT claims: %w", err)
	}
	return checkClaims(claims.Aud, claims.Exp, claims.Sub, k, origin, now)
}

func checkClaims(aud *string, exp *float64, sub *string, k, origin string, now time.Time) (vapid, error) {
	switch {
	case aud == nil || *aud != origin:
		return vapid{}, fmt.Errorf("vapid: aud must be %q", origin)
	case exp == nil:
		return vapid{}, errors.New("vapid: exp is required")
	case sub == nil:
		return vapid{}, errors.New("vapid: sub is required")
	}
	expires := time.Unix(int64(*exp), 0)
	if !expires.After(now) {
		return vapid{}, errors.New("vapid: JWT expired")
	}
	if expires.Sub(now) > 24*time.Hour {
		return vapid{}, errors.New("vapid: exp more than 24 hours ahead")
	}
	if err := checkSubject(*sub); err != nil {
		return vapid{}, err
	}
	return vapid{Key: k, Audience: *aud, Subject: *sub, Expires: expires}, nil
}

// checkSubject wants exactly one mailto: or https: URI, which catches
// webpush-go's "mailto:mailto:..." trap.
func checkSubject(sub string) error {
	if strings.ContainsAny(sub, " \t\r\n,") {
		return fmt.Errorf("vapid: sub %q is not a single URI", sub)
	}
	switch {
	case strings.HasPrefix(sub, "mailto:"):
		addr := strings.TrimPrefix(sub, "mailto:")
		if strings.Contains(addr, ":") || !strings.Contains(addr, "@") {
			return fmt.Errorf("vapid: sub %q is not one mailto: address", sub)
		}
	case strings.HasPrefix(sub, "https://") && len(sub) > len("https://"):
	default:
		return fmt.Errorf("vapid: sub %q must be a mailto: or https: URI", sub)
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// aes128gcm header sizes (RFC 8188 section 2.1, RFC 8291 section 4).
const (
	saltLen   = 16
	headerLen = saltLen + 4 + 1
	keyLen    = 65
	tagLen    = 16
)

// Decrypt opens an RFC 8291 message (one aes128gcm record) with the
// subscriber's private key and auth secret, as a browser does. It is written
// apart from package push's encryption, with crypto/ecdh, crypto/hkdf and
// AES-GCM from the standard library, so that each checks the other.
func Decrypt(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < headerLen {
		return nil, errors.New("aes128gcm: body shorter than the header")
	}
	salt := body[:saltLen]
	rs := binary.BigEndian.Uint32(body[saltLen : saltLen+4])
	idlen := int(body[saltLen+4])
	if idlen != keyLen || len(body) < headerLen+idlen+tagLen+1 {
		return nil, fmt.Errorf("aes128gcm: keyid must be the 65-byte sender key (idlen %d, body %d bytes)", idlen, len(body))
	}
	asPub := body[headerLen : headerLen+idlen]
	ct := body[headerLen+idlen:]
	if rs < tagLen+2 || uint64(len(ct)) > uint64(rs) {
		return nil, fmt.Errorf("aes128gcm: record size %d with %d bytes of ciphertext: one record expected", rs, len(ct))
	}
	as, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		return nil, fmt.Errorf("aes128gcm: sender key: %w", err)
	}
	secret, err := ua.ECDH(as)
	if err != nil {
		return nil, fmt.Errorf("aes128gcm: ecdh: %w", err)
	}
	info := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPub)
	ikm, err := hkdf.Key(sha256.New, secret, auth, info, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, errors.New("aes128gcm: decryption failed (wrong keys or corrupt body)")
	}
	// Padding: the last record ends with 0x02 followed by zero bytes.
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 || pt[i] != 2 {
		return nil, errors.New("aes128gcm: bad padding delimiter (want 0x02 for the last record)")
	}
	return pt[:i], nil
}
