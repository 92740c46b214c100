package upstream

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// Transport tuning for many long-lived, mostly idle streams. An idle stream
// holds its connection's buffers for its whole life, so they are kept small;
// bodies are read through the decoder's own growing buffer, which makes a
// larger transport buffer pointless.
const (
	transportReadBuffer  = 1 << 10
	transportWriteBuffer = 1 << 10
	// An h2 stream window bounds what one stream can buffer in memory while
	// its handler is slow; SSE never needs more to keep up.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 4<<20 - 1
)

// NewHTTPClient returns the client Client uses when its HTTPClient is nil,
// built for holding thousands of streams to a few origins: HTTP/2 over TLS
// when the origin offers it (all streams to one origin then share a few TCP
// connections), HTTP/1.1 otherwise with idle connections kept for reuse; no
// overall timeout, since streams are meant to last (Client.ReadTimeout
// detects stalls instead); h2 pings close dead connections so new streams
// are not queued on them; no transparent gzip, whose per-stream state would
// cost more than the stream itself. tlsConfig may be nil (system roots).
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ReadBufferSize:        transportReadBuffer,
		WriteBufferSize:       transportWriteBuffer,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			MaxReceiveBufferPerConnection: h2ConnWindow,
		},
	}
	if tlsConfig != nil {
		t.TLSClientConfig = tlsConfig.Clone()
	}
	return &http.Client{Transport: t}
}

// defaultHTTPClient is shared by every Client without its own, so that
// streams to one origin share connections across Clients.
var defaultHTTPClient = sync.OnceValue(func() *http.Client { return NewHTTPClient(nil) })
