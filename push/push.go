// Package push wakes sleeping devices with one Web Push message (RFC 8030),
// encrypted with aes128gcm (RFC 8291) and signed with VAPID (RFC 8292).
//
// The central type is Sender, which sends one wake Message to one
// subscription and turns the push service's answer into an error a caller can
// act on (errors.Is(err, ErrGone): stop pushing to that subscription). Queue
// puts a bounded work queue with a fixed number of workers in front of a
// Sender: it coalesces a burst of wakes for one device and upstream into one
// message and retries 429 and 5xx answers later without holding a goroutine
// per waiting message.
//
// NewHTTPClient is the client the Sender should use in production: it has
// timeouts and refuses to connect to loopback, private and other non-public
// addresses, whatever a host name resolves to. CheckEndpoint and
// ValidateSubscription check a browser's PushSubscription at registration.
//
// The encryption (seal.go) and the VAPID header (vapid.go) are built here
// with the standard library and golang-jwt rather than by webpush-go's
// SendNotification, so that one signed VAPID header serves every message to
// a push service for an hour; see Sender and the benchmarks.
package push

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	// ErrGone: the push service answered 404 or 410; the subscription no
	// longer exists and nothing more should be sent to it.
	ErrGone = errors.New("push: subscription gone")
	// ErrRejected: the push service answered 400, 401 or 403 (bad request,
	// VAPID refused); retrying the same request cannot succeed.
	ErrRejected = errors.New("push: rejected by push service")
	// ErrTooLarge: the message was too large, even without its optional
	// fields (a 413 answer to the retry, or too large to send at all).
	ErrTooLarge = errors.New("push: message too large")
	// ErrRetryable: the push service answered 429 or 5xx, or could not be
	// reached; the same message may succeed later.
	ErrRetryable = errors.New("push: temporary failure")
	// ErrBlockedAddress: the endpoint's host resolved to an address that is
	// not public (loopback, private, link-local, ...) and insecure endpoints
	// are not allowed.
	ErrBlockedAddress = errors.New("push: endpoint address not allowed")
	// ErrInvalidSubscription: the push subscription is malformed (see
	// ValidateSubscription); a *FieldError says which field.
	ErrInvalidSubscription = errors.New("push: invalid push subscription")
	// ErrInvalidConfig: NewSender was given a bad Config.
	ErrInvalidConfig = errors.New("push: invalid config")
	// ErrQueueFull: Enqueue found the queue at its capacity.
	ErrQueueFull = errors.New("push: queue full")
	// ErrClosed: the Queue was closed; also the Err of a Result for a job
	// dropped at Close.
	ErrClosed = errors.New("push: closed")
)

// Defaults of Config.
const (
	DefaultTTL     = 5 * time.Minute
	DefaultUrgency = "high"
)

// Config configures a Sender.
type Config struct {
	// VAPIDPublicKey is the uncompressed P-256 public key (65 bytes),
	// base64url with or without padding.
	VAPIDPublicKey string
	// VAPIDPrivateKey is the 32-byte P-256 private scalar, base64url.
	VAPIDPrivateKey string
	// Subject is the VAPID "sub" claim: "mailto:ops@example.com" or an
	// https: URL. Required.
	Subject string
	// TTL is how long the push service keeps an undelivered message; sent
	// in whole seconds, rounded up. Zero means DefaultTTL; a TTL of 0
	// seconds is never sent, since a sleeping device would never get it.
	TTL time.Duration
	// Urgency is very-low, low, normal or high. Empty means DefaultUrgency.
	Urgency string
}

// WakeType is the type of every wake message.
const WakeType = "wakeline.wake"

// Message is the wake payload of INTERFACE.md, sent as JSON.
//
// Type, Device and Upstream are required: they tell the device which stream
// to reopen. Pending and LastEventID are optional: when the push service
// answers 413 (or the JSON would not fit in one record), the message is sent
// once more without them, and a receiver then sees them absent.
type Message struct {
	Type        string `json:"type"` // WakeType when empty
	Device      string `json:"device"`
	Upstream    string `json:"upstream"`
	Pending     int64  `json:"pending"`
	LastEventID string `json:"last_event_id"`
}

// minimal is the message without its optional fields.
type minimal struct {
	Type     string `json:"type"`
	Device   string `json:"device"`
	Upstream string `json:"upstream"`
}

// Topic returns the Topic header for a device and upstream: stable, 32
// characters of [0-9a-f] (a truncated SHA-256), so that every push service,
// Apple's included, collapses a repeated wake into one.
func Topic(device, upstream string) string {
	h := sha256.New()
	// Length-prefix the device so that ("a","bc") and ("ab","c") differ.
	h.Write([]byte(strconv.Itoa(len(device)) + ":" + device + upstream))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// validTopic: RFC 8030 allows the URL-safe base64 alphabet and 32
// characters; we are stricter so that every push service accepts it.
func validTopic(t string) bool {
	if len(t) > 32 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// StatusError is a non-2xx answer of a push service. errors.Is matches it
// against ErrGone, ErrRejected, ErrTooLarge or ErrRetryable by Code.
type StatusError struct {
	Code int
	// RetryAfter is the push service's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Reason is the start of the answer's body, printable ASCII only.
	Reason string
}

func (e *StatusError) Error() string {
	s := "push: push service answered " + strconv.Itoa(e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns the sentinel for the answer's class, nil for a code no
// class covers (3xx, other 4xx).
func (e *StatusError) Unwrap() error {
	switch c := e.Code; {
	case c == 404 || c == 410:
		return ErrGone
	case c == 400 || c == 401 || c == 403:
		return ErrRejected
	case c == 413:
		return ErrTooLarge
	case c == 429 || c >= 500:
		return ErrRetryable
	}
	return nil
}

// FieldError is a bad push subscription field; Field is its path in the
// registration request, e.g. "push_subscription.keys.p256dh".
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalidSubscription) true.
func (e *FieldError) Unwrap() error { return ErrInvalidSubscription }

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
