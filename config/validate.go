package config

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/net/http/httpguts"
)

var upstreamName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// reservedHeaders are set by the gateway itself on origin connections, so
// neither the config nor a device may set them.
var reservedHeaders = []string{
	"Connection", "Content-Length", "Host", "Keep-Alive", "Last-Event-Id",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// problems collects FieldErrors in the order the keys are checked.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Err: fmt.Errorf(format, args...)})
}

// Validate checks every value and returns nil or every problem found,
// joined, each a *FieldError naming its key. Values that may be secret
// (tokens, keys, URLs) are never quoted in the messages.
func (c Config) Validate() error {
	var p problems
	c.validateListen(&p)
	c.Store.validate(&p)
	c.Auth.validate(&p)
	c.Push.validate(&p)
	c.Stream.validate(&p)
	seen := make(map[string]int, len(c.Upstreams))
	for i, u := range c.Upstreams {
		key := "upstreams[" + strconv.Itoa(i) + "]"
		u.validate(&p, key)
		if first, dup := seen[u.Name]; dup && u.Name != "" {
			p.add(key+".name", "duplicate %q (first at upstreams[%d])", u.Name, first)
		} else {
			seen[u.Name] = i
		}
	}
	return errors.Join(p...)
}

func (c Config) validateListen(p *problems) {
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		p.add("listen", "want host:port, like %q: %v", DefaultListen, unwrapAddr(err))
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add("listen", "port %q is not a number from 0 to 65535", port)
	}
}

func unwrapAddr(err error) error {
	if ae, ok := errors.AsType[*net.AddrError](err); ok {
		return errors.New(ae.Err)
	}
	return err
}

func (s StoreConfig) validate(p *problems) {
	switch s.Driver {
	case DriverBolt:
		if s.Path == "" {
			p.add("store.path", "required with driver %q", DriverBolt)
		}
	case DriverRedis:
		if s.RedisURL == "" {
			p.add("store.redis_url", "required with driver %q", DriverRedis)
		} else if err := checkRedisURL(s.RedisURL); err != nil {
			p.add("store.redis_url", "%v", err)
		}
		if s.LeaseTTL < 100*time.Millisecond {
			p.add("store.lease_ttl", "must be at least 100ms, not %v", s.LeaseTTL)
		}
		if strings.ContainsAny(s.ReplicaID, " \t\r\n\x00") || len(s.ReplicaID) > 128 {
			p.add("store.replica_id", "at most 128 bytes, no white space or NUL")
		}
	default:
		p.add("store.driver", "%q is not %q or %q", s.Driver, DriverBolt, DriverRedis)
	}
}

// checkRedisURL parses as the redis store will. url.Parse's own error
// quotes the whole URL, password included, so only its cause is kept.
func checkRedisURL(s string) error {
	if _, err := url.Parse(s); err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			return fmt.Errorf("not a URL: %w", ue.Err)
		}
		return errors.New("not a URL")
	}
	if _, err := redis.ParseURL(s); err != nil {
		return fmt.Errorf("not a redis URL (redis://, rediss:// or unix://): %w", err)
	}
	return nil
}

func (a AuthConfig) validate(p *problems) {
	for i, tok := range a.RegistrationTokens {
		key := "auth.registration_tokens[" + strconv.Itoa(i) + "]"
		switch {
		case tok == "":
			p.add(key, "empty token")
		case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			p.add(key, "contains white space or control characters, which a bearer token cannot carry")
		}
	}
}

func (c PushConfig) validate(p *problems) {
	c.validateVAPID(p)
	if c.Subject != "" {
		if err := checkSubject(c.Subject); err != nil {
			p.add("push.subject", "%v", err)
		}
	}
	if c.TTL < time.Second {
		p.add("push.ttl", "must be at least 1s (the TTL header counts seconds), got %v", c.TTL)
	}
	if !slices.Contains(Urgencies, c.Urgency) {
		p.add("push.urgency", "%q is not one of %s", c.Urgency, strings.Join(Urgencies, ", "))
	}
	positive(p, "push.rewake_after", c.RewakeAfter)
}

func (c PushConfig) validateVAPID(p *problems) {
	pub, priv := c.VAPIDPublicKey, c.VAPIDPrivateKey
	switch {
	case pub == "" && priv == "":
		return
	case pub == "":
		p.add("push.vapid_public_key", "required when vapid_private_key is set")
		return
	case priv == "":
		p.add("push.vapid_private_key", "required when vapid_public_key is set")
		return
	}
	if c.Subject == "" {
		p.add("push.subject", "required when VAPID keys are set (mailto: or https: contact)")
	}
	pubBytes, err := decodeKey(pub)
	if err != nil || len(pubBytes) != 65 || pubBytes[0] != 4 {
		p.add("push.vapid_public_key", "want base64url of an uncompressed P-256 point (65 bytes, 87 characters)")
		return
	}
	privBytes, err := decodeKey(priv)
	if err != nil || len(privBytes) != 32 {
		p.add("push.vapid_private_key", "want base64url of a 32-byte P-256 private key (43 characters)")
		return
	}
	key, err := ecdh.P256().NewPrivateKey(privBytes)
	if err != nil {
		p.add("push.vapid_private_key", "not a valid P-256 private key")
		return
	}
	if !bytes.Equal(key.PublicKey().Bytes(), pubBytes) {
		p.add("push.vapid_public_key", "does not belong to vapid_private_key")
	}
}

// decodeKey accepts base64url with or without padding, as webpush-go does.
func decodeKey(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func checkSubject(s string) error {
	switch {
	case strings.HasPrefix(s, "mailto:"):
		if len(s) == len("mailto:") {
			return errors.New("mailto: needs an address")
		}
		return nil
	case strings.HasPrefix(s, "https:"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not an https URL with a host", s)
		}
		return nil
	default:
		return fmt.Errorf("%q must start with mailto: or https:", s)
	}
}

func (s StreamConfig) validate(p *problems) {
	positive(p, "stream.heartbeat", s.Heartbeat)
	positive(p, "stream.retry", s.Retry)
	if s.MaxEventSize <= 0 {
		p.add("stream.max_event_size", "must be > 0, got %d", s.MaxEventSize)
	}
	if s.SendBuffer <= 0 {
		p.add("stream.send_buffer", "must be > 0, got %d", s.SendBuffer)
	}
	for i, o := range s.CORSOrigins {
		if err := checkWebOrigin(o); err != nil {
			p.add(fmt.Sprintf("stream.cors_origins[%d]", i), "%v", err)
		}
	}
}

// checkWebOrigin accepts "*" or a browser origin: scheme://host[:port],
// nothing after it (browsers send exactly that in the Origin header).
func checkWebOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not \"*\" or an origin like https://app.example", o)
	}
	return nil
}

func (u Upstream) validate(p *problems, key string) {
	switch {
	case u.Name == "":
		p.add(key+".name", "required")
	case !upstreamName.MatchString(u.Name):
		p.add(key+".name", "%q must match [a-z0-9_-]+", u.Name)
	}
	if u.URL == "" {
		p.add(key+".url", "required")
	} else if err := checkOriginURL(u.URL); err != nil {
		p.add(key+".url", "%v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(u.Headers)) {
		hk := key + ".headers." + name
		if err := checkHeaderName(name); err != nil {
			p.add(hk, "%v", err)
		} else if !httpguts.ValidHeaderFieldValue(u.Headers[name]) {
			p.add(hk, "value contains a control character")
		}
	}
	if len(u.DeviceHeaders) > 0 && u.IsShared() {
		p.add(key+".device_headers", "only allowed with shared: false (a shared connection serves every device)")
	}
	seen := map[string]bool{}
	for i, name := range u.DeviceHeaders {
		dk := key + ".device_headers[" + strconv.Itoa(i) + "]"
		if err := checkHeaderName(name); err != nil {
			p.add(dk, "%v", err)
		} else if canon := strings.ToLower(name); seen[canon] {
			p.add(dk, "%q listed twice", name)
		} else {
			seen[canon] = true
		}
	}
	positive(p, key+".retry.initial", u.Retry.Initial)
	if u.Retry.Initial > 0 && u.Retry.Max < u.Retry.Initial {
		p.add(key+".retry.max", "%v is less than retry.initial %v", u.Retry.Max, u.Retry.Initial)
	}
	if u.Buffer.MaxEvents <= 0 {
		p.add(key+".buffer.max_events", "must be > 0, got %d", u.Buffer.MaxEvents)
	}
	positive(p, key+".buffer.max_age", u.Buffer.MaxAge)
}

// checkOriginURL does not quote the URL: its query may hold a secret.
func checkOriginURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an absolute http:// or https:// URL")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

func checkHeaderName(name string) error {
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("%q is not a valid header name", name)
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("%q is set by the gateway itself", name)
		}
	}
	return nil
}

func positive(p *problems, key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be > 0, got %v", d)
	}
}
