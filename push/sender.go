package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wakeline/wakeline/store"
)

// Log attribute keys.
const (
	logCode   = "code"
	logReason = "reason"
	logHost   = "push_host"
)

// Limits of an answer.
const (
	// maxReason bounds how much of an error answer is kept; maxDrain how
	// much is read so that the connection can be reused.
	maxReason = 256
	maxDrain  = 64 << 10
	// maxRetryAfter caps a push service's Retry-After (the Queue gives up
	// long before; see QueueOptions.MaxDelay).
	maxRetryAfter = 365 * 24 * time.Hour
	// maxTTL: push services keep messages for at most four weeks.
	maxTTL = 28 * 24 * time.Hour
)

// Urgency values (RFC 8030 section 5.3).
var urgencies = map[string]bool{"very-low": true, "low": true, "normal": true, "high": true}

// Sender sends wake messages. It is safe for concurrent use.
//
// It builds the request itself rather than through webpush-go's
// SendNotification, which signs a fresh VAPID JWT for every message (about
// two thirds of its CPU time, see the benchmarks) and cannot be given a
// cached one; it also avoids that function's traps (TTL: 0 by default,
// "mailto:mailto:", 4 KB padding, writes into the caller's slice, non-2xx
// answers returned as success).
type Sender struct {
	client  *http.Client
	log     *slog.Logger
	vapid   *signer
	ttl     string // seconds, > 0
	urgency string
}

// CloseIdleConnections closes the sender's idle connections to push
// services; the owner of a Sender calls it when done with it.
func (s *Sender) CloseIdleConnections() { s.client.CloseIdleConnections() }

// NewSender checks cfg and returns a Sender. A nil client means
// NewHTTPClient(false); a nil logger discards.
func NewSender(cfg Config, client *http.Client, logger *slog.Logger) (*Sender, error) {
	pub, priv, err := vapidKeys(cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey)
	if err != nil {
		return nil, err
	}
	subject, err := checkSubject(cfg.Subject)
	if err != nil {
		return nil, err
	}
	ttl := cfg.TTL
	switch {
	case ttl < 0:
		return nil, configErr("ttl: must not be negative")
	case ttl == 0:
		ttl = DefaultTTL
	case ttl > maxTTL:
		return nil, configErr("ttl: at most 28 days")
	}
	urgency := cfg.Urgency
	if urgency == "" {
		urgency = DefaultUrgency
	}
	if !urgencies[urgency] {
		return nil, configErr("urgency: %q is not very-low, low, normal or high", cfg.Urgency)
	}
	v, err := newSigner(pub, priv, subject)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = NewHTTPClient(false)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sender{
		client: client, log: logger, vapid: v,
		// Round up: a TTL under a second must not become "TTL: 0".
		ttl:     strconv.FormatInt(int64(math.Ceil(ttl.Seconds())), 10),
		urgency: urgency,
	}, nil
}

// Send sends one wake message to sub with the given Topic header (empty for
// none). It returns nil when the push service accepted it (2xx). A 413 is
// retried once at once without the optional fields of Message. Other
// failures are a *StatusError (errors.Is: ErrGone, ErrRejected, ErrTooLarge,
// ErrRetryable), ErrInvalidSubscription, ErrBlockedAddress, or a transport
// error that also matches ErrRetryable. Send does not retry 429 or 5xx
// answers: Queue does, later.
func (s *Sender) Send(ctx context.Context, sub store.PushSubscription, topic string, msg Message) error {
	if topic != "" && !validTopic(topic) {
		return fmt.Errorf("push: topic %q: want at most 32 characters of [A-Za-z0-9]", topic)
	}
	keys, err := subscriptionKeys(sub)
	if err != nil {
		return err
	}
	u, err := url.Parse(sub.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &FieldError{Field: "push_subscription.endpoint", Msg: "not an http(s) URL"}
	}
	if msg.Type == "" {
		msg.Type = WakeType
	}
	full, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("push: encoding message: %w", err)
	}
	small, err := json.Marshal(minimal{Type: msg.Type, Device: msg.Device, Upstream: msg.Upstream})
	if err != nil {
		return fmt.Errorf("push: encoding message: %w", err)
	}
	payload := full
	if len(full) > maxPayload {
		payload = small
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("%w: %d bytes without optional fields", ErrTooLarge, len(payload))
	}
	r := request{endpoint: sub.Endpoint, audience: u.Scheme + "://" + u.Host, keys: keys, topic: topic}
	err = s.post(ctx, r, payload)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusRequestEntityTooLarge && len(payload) > len(small) {
		err = s.post(ctx, r, small)
	}
	return err
}

// request is what post needs of a subscription, parsed once per Send.
type request struct {
	endpoint, audience, topic string
	keys                      subKeys
}

// post sends one encrypted payload and interprets the answer.
func (s *Sender) post(ctx context.Context, r request, payload []byte) error {
	body, err := seal(payload, r.keys.p256dh, r.keys.auth)
	if err != nil {
		return err
	}
	auth, err := s.vapid.authorization(r.audience, time.Now())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return &FieldError{Field: "push_subscription.endpoint", Msg: "not a usable URL"}
	}
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("TTL", s.ttl)
	req.Header.Set("Urgency", s.urgency)
	req.Header.Set("Authorization", auth)
	if r.topic != "" {
		req.Header.Set("Topic", r.topic)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return transportErr(ctx, err)
	}
	return s.answer(resp, r.endpoint)
}

// transportErr classifies a failure to get an answer: retryable, unless
// the guard refused the address or the caller gave up. The endpoint in the
// error is cut to its origin: its path identifies the device, and errors end
// up in logs.
func transportErr(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = &url.Error{Op: ue.Op, URL: redact(ue.URL), Err: ue.Err}
	}
	if errors.Is(err, ErrBlockedAddress) || ctx.Err() != nil {
		return fmt.Errorf("push: send: %w", err)
	}
	return fmt.Errorf("push: send: %w: %w", ErrRetryable, err)
}

// answer turns a response into nil or a *StatusError.
func (s *Sender) answer(resp *http.Response, endpoint string) error {
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	se := &StatusError{
		Code:       resp.StatusCode,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Reason:     printable(body),
	}
	if errors.Is(se, ErrRejected) {
		// Logged here, once per message: the queue does not retry these.
		// The host only: the full endpoint identifies the device.
		s.log.Warn("push: push service rejected a wake message",
			slog.Int(logCode, se.Code), slog.String(logReason, se.Reason), slog.String(logHost, hostOf(endpoint)))
	}
	return se
}

// retryAfter parses a Retry-After value: delta seconds or an HTTP date.
// Anything unparsable, negative or past counts as absent.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		// Cap before converting, so a huge value cannot overflow.
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// printable keeps the printable ASCII of an answer body, for logs and
// errors.
func printable(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		case c == '\n' || c == '\r' || c == '\t':
			sb.WriteByte(' ')
		}
	}
	return strings.TrimSpace(sb.String())
}

// redact keeps the origin of an endpoint.
func redact(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host + "/…"
	}
	return "(endpoint)"
}

// hostOf is the host of an endpoint, for logs.
func hostOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil {
		return u.Host
	}
	return ""
}
