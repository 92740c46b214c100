package push

import (
	"crypto/ecdh"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/wakeline/wakeline/store"
)

// Timeouts and pool sizes of NewHTTPClient. A push service answers in well
// under a second; anything slower is treated as a transport failure and
// retried by the Queue.
const (
	clientTimeout       = 30 * time.Second
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	responseTimeout     = 20 * time.Second
	idleConnTimeout     = 90 * time.Second
	// A few push services (FCM, Mozilla, Apple, ...) receive everything, so
	// keep enough idle connections per host for every queue worker.
	maxIdleConnsPerHost = 64
	maxIdleConns        = 256
)

// maxEndpointLen bounds a registered endpoint; real ones are a few hundred
// bytes.
const maxEndpointLen = 2048

// NewHTTPClient returns the client for talking to push services: timeouts,
// connection reuse, HTTP/2 when the server offers it, no redirects, no
// environment proxy, and, unless allowInsecure, a dialer that refuses any
// address that is not public unicast. The check runs on the address being
// connected to, after DNS resolution, so a host name that resolves to
// 127.0.0.1 or 169.254.169.254 is refused as surely as the literal address.
func NewHTTPClient(allowInsecure bool) *http.Client {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	if !allowInsecure {
		d.Control = guardControl
	}
	t := &http.Transport{
		// No proxy: the guard must see the push service's address, not a
		// proxy's.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseTimeout,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: t,
		Timeout:   clientTimeout,
		// A push service has no reason to redirect a POST; following one
		// could lead the gateway anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// guardControl runs after DNS resolution, just before connect.
func guardControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBlockedAddress, address)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, ap.Addr())
	}
	return nil
}

// nonPublic are special-purpose ranges (RFC 6890 and successors) that
// netip's predicates do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),  // reserved and broadcast
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 may reach private IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"), // 6to4 embeds any IPv4 address
}

// publicAddr reports whether a is a public unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckEndpoint checks a push endpoint at registration: an absolute https
// URL (http allowed with allowInsecure) without credentials or fragment,
// whose host, if a literal IP or localhost, is public. Host names are checked
// again at connect time by NewHTTPClient's dialer. The error is a
// *FieldError for "push_subscription.endpoint".
func CheckEndpoint(endpoint string, allowInsecure bool) error {
	bad := func(msg string) error { return &FieldError{Field: "push_subscription.endpoint", Msg: msg} }
	if endpoint == "" {
		return bad("required")
	}
	if len(endpoint) > maxEndpointLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxEndpointLen))
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return bad("not a URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowInsecure:
	case u.Scheme == "http":
		return bad("must be https")
	default:
		return bad("must be an https URL")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return bad("must be an absolute URL with a host")
	}
	if u.User != nil {
		return bad("must not contain credentials")
	}
	if u.Fragment != "" || strings.Contains(endpoint, "#") {
		return bad("must not contain a fragment")
	}
	if allowInsecure {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return bad("must not be a loopback host")
	}
	if a, err := netip.ParseAddr(host); err == nil && !publicAddr(a) {
		return bad("must not be a loopback, private or otherwise non-public address")
	}
	return nil
}

// Bounds on the encoded subscription keys, checked before decoding.
const (
	p256dhLen  = 65
	authLen    = 16
	maxKeyText = 128
)

// ValidateSubscription checks a browser's PushSubscription at registration:
// the endpoint (CheckEndpoint), keys.p256dh (base64url of an uncompressed
// P-256 point on the curve) and keys.auth (base64url of 16 bytes). The error
// is a *FieldError naming the first bad field.
func ValidateSubscription(sub store.PushSubscription, allowInsecure bool) error {
	if err := CheckEndpoint(sub.Endpoint, allowInsecure); err != nil {
		return err
	}
	if _, err := subscriptionKeys(sub); err != nil {
		return err
	}
	return nil
}

// subKeys are a subscription's decoded keys.
type subKeys struct {
	p256dh *ecdh.PublicKey
	auth   []byte
}

func subscriptionKeys(sub store.PushSubscription) (subKeys, error) {
	const fp, fa = "push_subscription.keys.p256dh", "push_subscription.keys.auth"
	var k subKeys
	switch {
	case sub.Keys.P256dh == "":
		return k, &FieldError{Field: fp, Msg: "required"}
	case len(sub.Keys.P256dh) > maxKeyText:
		return k, &FieldError{Field: fp, Msg: "too long for a P-256 public key"}
	}
	b, err := decodeB64URL(sub.Keys.P256dh)
	if err != nil {
		return k, &FieldError{Field: fp, Msg: "not base64url"}
	}
	if len(b) != p256dhLen || b[0] != 4 {
		return k, &FieldError{Field: fp, Msg: fmt.Sprintf("must be an uncompressed P-256 point (65 bytes), got %d bytes", len(b))}
	}
	if k.p256dh, err = ecdh.P256().NewPublicKey(b); err != nil {
		return k, &FieldError{Field: fp, Msg: "not a point on the P-256 curve"}
	}
	switch {
	case sub.Keys.Auth == "":
		return k, &FieldError{Field: fa, Msg: "required"}
	case len(sub.Keys.Auth) > maxKeyText:
		return k, &FieldError{Field: fa, Msg: "too long for an auth secret"}
	}
	if k.auth, err = decodeB64URL(sub.Keys.Auth); err != nil {
		return k, &FieldError{Field: fa, Msg: "not base64url"}
	}
	if len(k.auth) != authLen {
		return k, &FieldError{Field: fa, Msg: fmt.Sprintf("must be 16 bytes, got %d", len(k.auth))}
	}
	return k, nil
}
