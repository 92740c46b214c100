package push

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Sizes of an aes128gcm message (RFC 8188 section 2.1, RFC 8291 section 4).
const (
	saltLen = 16
	// sealHeader is salt, rs (4), idlen (1) and the sender's public key.
	sealHeader = saltLen + 4 + 1 + p256dhLen
	gcmTag     = 16
	// maxBody is the largest message body: 4096 bytes is what every push
	// service accepts (RFC 8030 section 7.2, RFC 8291 section 4).
	maxBody = 4096
	// recordOverhead is what the body adds to the payload: the header, the
	// padding delimiter and the tag.
	recordOverhead = sealHeader + 1 + gcmTag
	// maxPayload is the largest payload that fits in maxBody.
	maxPayload = maxBody - recordOverhead
	// recordQuantum: the body is padded to a multiple of it, so that its
	// length says only roughly how long the payload is, without padding
	// every message to 4 KB as webpush-go does.
	recordQuantum = 64
	// recordSize is the rs parameter: the one record, with its padding and
	// tag, is always shorter than this, as RFC 8291 asks.
	recordSize = maxBody
)

// seal encrypts payload for a subscriber (RFC 8291): a fresh sender key pair
// and salt for every message, one aes128gcm record. The payload is not
// modified.
func seal(payload []byte, ua *ecdh.PublicKey, auth []byte) ([]byte, error) {
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("%w: %d-byte payload", ErrTooLarge, len(payload))
	}
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("push: sender key: %w", err)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("push: salt: %w", err)
	}
	return sealWith(payload, ua, auth, as, salt, padding(len(payload)))
}

// padding is how many zero bytes round the body up to recordQuantum.
func padding(n int) int {
	body := n + recordOverhead
	return min((body+recordQuantum-1)/recordQuantum*recordQuantum, maxBody) - body
}

// sealWith is seal with its random inputs given, for the RFC's test vector.
func sealWith(payload []byte, ua *ecdh.PublicKey, auth []byte, as *ecdh.PrivateKey, salt []byte, pad int) ([]byte, error) {
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, fmt.Errorf("push: ecdh: %w", err)
	}
	asPub := as.PublicKey().Bytes()
	info := "WebPush: info\x00" + string(ua.Bytes()) + string(asPub)
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
	plain := make([]byte, len(payload)+1+pad)
	copy(plain, payload)
	plain[len(payload)] = 2 // delimiter of the last (only) record; zeros follow
	body := make([]byte, 0, sealHeader+len(plain)+gcmTag)
	body = append(body, salt...)
	body = binary.BigEndian.AppendUint32(body, recordSize)
	body = append(body, byte(len(asPub)))
	body = append(body, asPub...)
	return gcm.Seal(body, nonce, plain, nil), nil
}
