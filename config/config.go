// Package config is wakeline's configuration: the Config struct, its
// embedded defaults (Default), loading from a YAML file with WAKELINE_*
// environment overrides (Load), and validation whose errors name the key
// (Config.Validate).
//
// This is the only package that imports viper; everything else receives a
// plain Config value.
package config

import (
	"errors"
	"time"
)

// Store drivers.
const (
	DriverBolt  = "bolt"  // embedded bbolt file, one replica
	DriverRedis = "redis" // Redis, several replicas
)

// Embedded defaults. Default returns a Config holding these; a config file
// or the environment only needs to name what differs.
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultStoreDriver      = DriverBolt
	DefaultStorePath        = "wakeline.db"
	DefaultRedisURL         = "redis://127.0.0.1:6379/0"
	DefaultLeaseTTL         = 5 * time.Second
	DefaultTTL              = 5 * time.Minute
	DefaultUrgency          = "high"
	DefaultRewakeAfter      = 30 * time.Second
	DefaultHeartbeat        = 15 * time.Second
	DefaultStreamRetry      = 5 * time.Second
	DefaultMaxEventSize     = 1 << 20 // 1 MiB
	DefaultSendBuffer       = 256
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 60 * time.Second
	DefaultBufferMaxEvents  = 10000
	DefaultBufferMaxAge     = 24 * time.Hour
	DefaultUpstreamIsShared = true
)

// Environment.
const (
	// EnvPrefix starts every override variable: WAKELINE_ + the key path in
	// upper case with "_" for "." (WAKELINE_STORE_DRIVER).
	EnvPrefix = "WAKELINE"
	// EnvConfigFile names the config file when Load is given no path.
	EnvConfigFile = "WAKELINE_CONFIG"
	// MaxFileSize bounds the config file Load reads; a config is a few KiB.
	MaxFileSize = 1 << 20
)

// Urgencies are the values push.urgency accepts (RFC 8030 section 5.3).
var Urgencies = []string{"very-low", "low", "normal", "high"}

var (
	// ErrUnknownKey is wrapped (in a *FieldError naming the key) for every
	// key of the file that wakeline does not know; usually a typo.
	ErrUnknownKey = errors.New("unknown key")
	// ErrFileTooLarge is returned for a config file over MaxFileSize.
	ErrFileTooLarge = errors.New("config: file too large")
)

// FieldError is one problem with one key. Load and Validate return them,
// several joined with errors.Join, one per line.
type FieldError struct {
	// Key is the path as written in YAML: "store.driver", "upstreams[1].name",
	// "upstreams[0].headers.Authorization".
	Key string
	Err error
}

func (e *FieldError) Error() string { return "config: " + e.Key + ": " + e.Err.Error() }

// Unwrap returns the cause, which may be a sentinel such as ErrUnknownKey.
func (e *FieldError) Unwrap() error { return e.Err }

// Config is the whole configuration of a gateway. Its zero value is not
// usable; start from Default or Load.
type Config struct {
	// Listen is the host:port of the HTTP server. Default DefaultListen.
	Listen    string       `mapstructure:"listen"`
	Store     StoreConfig  `mapstructure:"store"`
	Auth      AuthConfig   `mapstructure:"auth"`
	Push      PushConfig   `mapstructure:"push"`
	Stream    StreamConfig `mapstructure:"stream"`
	Upstreams []Upstream   `mapstructure:"upstreams"`

	// Source is the config file Load read, or "" when it ran on embedded
	// defaults (plus environment overrides). Not a config key.
	Source string `mapstructure:"-"`
}

// StoreConfig chooses where devices and buffered events live.
type StoreConfig struct {
	// Driver is DriverBolt (default) or DriverRedis.
	Driver string `mapstructure:"driver"`
	// Path is the bbolt file, used with DriverBolt. Default DefaultStorePath.
	Path string `mapstructure:"path"`
	// RedisURL is used with DriverRedis, in go-redis ParseURL form.
	// Default DefaultRedisURL.
	RedisURL string `mapstructure:"redis_url"`
	// LeaseTTL is how long a replica's hold on an origin stream lasts
	// without renewal (DriverRedis): a dead replica's streams move to
	// another within it. Default DefaultLeaseTTL.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// ReplicaID names this replica among several (DriverRedis). Empty (the
	// default) means the host name plus a random suffix, new each start.
	ReplicaID string `mapstructure:"replica_id"`
}

// AuthConfig holds who may register devices.
type AuthConfig struct {
	// RegistrationTokens are the bearer tokens accepted by POST /v1/devices.
	// None (the default) means nobody can register: closed by default.
	// From the environment: comma or space separated.
	RegistrationTokens []string `mapstructure:"registration_tokens"`
}

// PushConfig configures wake messages.
type PushConfig struct {
	// VAPIDPublicKey and VAPIDPrivateKey are base64url (padded or not): the
	// uncompressed P-256 point and the 32-byte scalar. Both or neither; with
	// neither, serve generates a pair once and keeps it in the store.
	VAPIDPublicKey  string `mapstructure:"vapid_public_key"`
	VAPIDPrivateKey string `mapstructure:"vapid_private_key"`
	// Subject is the VAPID "sub" claim, "mailto:..." or "https://...".
	// Required when the keys are set. Default "".
	Subject string `mapstructure:"subject"`
	// TTL is the TTL header of wake messages, at least 1s. Default DefaultTTL.
	TTL time.Duration `mapstructure:"ttl"`
	// Urgency is one of Urgencies. Default DefaultUrgency.
	Urgency string `mapstructure:"urgency"`
	// RewakeAfter is how long a wake stays outstanding before the device is
	// pushed again. Default DefaultRewakeAfter.
	RewakeAfter time.Duration `mapstructure:"rewake_after"`
	// AllowInsecureEndpoints permits http:// and loopback/private push
	// endpoints (tests, development). Default false.
	AllowInsecureEndpoints bool `mapstructure:"allow_insecure_endpoints"`
}

// StreamConfig configures the streams: devices' streams to the gateway and
// the gateway's reading of origins.
type StreamConfig struct {
	// Heartbeat is how often an idle device stream gets a comment line.
	// Default DefaultHeartbeat.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
	// Retry is the "retry:" hint sent to devices: how long they wait before
	// reconnecting after the gateway ends a stream. Default DefaultStreamRetry.
	Retry time.Duration `mapstructure:"retry"`
	// MaxEventSize bounds one event read from an origin, in bytes; a larger
	// one is an origin error. Default DefaultMaxEventSize.
	MaxEventSize int `mapstructure:"max_event_size"`
	// SendBuffer bounds the events one read of a log hands a device stream
	// at once (a replay page). Nothing more is queued for a device: one
	// that cannot take an event within the write timeout is disconnected
	// and resumes by Last-Event-ID. Default DefaultSendBuffer.
	SendBuffer int `mapstructure:"send_buffer"`
	// CORSOrigins are the web origins ("https://app.example", or "*") whose
	// pages may call the API and open streams from the browser. None (the
	// default): only pages served from the gateway's own origin, or through
	// a reverse proxy on the app's.
	CORSOrigins []string `mapstructure:"cors_origins"`
}

// Upstream is one origin event stream devices subscribe to.
type Upstream struct {
	// Name identifies the upstream in the API: [a-z0-9_-]+, unique.
	Name string `mapstructure:"name"`
	// URL is the origin's event stream, http or https.
	URL string `mapstructure:"url"`
	// Headers are sent on every connection to the origin. Names keep the
	// case written in the file.
	Headers map[string]string `mapstructure:"headers"`
	// Shared: nil or true means one origin connection serves every device;
	// false means one connection per device. Use IsShared.
	Shared *bool `mapstructure:"shared"`
	// DeviceHeaders are the header names a device may set for its own
	// connection; only with Shared false.
	DeviceHeaders []string     `mapstructure:"device_headers"`
	Retry         RetryConfig  `mapstructure:"retry"`
	Buffer        BufferConfig `mapstructure:"buffer"`
}

// IsShared reports whether one origin connection serves every device.
func (u Upstream) IsShared() bool {
	if u.Shared == nil {
		return DefaultUpstreamIsShared
	}
	return *u.Shared
}

// RetryConfig is the reconnect backoff to an origin. The origin's own
// "retry:" field wins when it is larger.
type RetryConfig struct {
	// Initial is the first delay. Default DefaultRetryInitial.
	Initial time.Duration `mapstructure:"initial"`
	// Max caps the delay; at least Initial. Default DefaultRetryMax.
	Max time.Duration `mapstructure:"max"`
}

// BufferConfig bounds what is kept for replay per stream; the oldest
// events go first when either bound is reached.
type BufferConfig struct {
	// MaxEvents default DefaultBufferMaxEvents.
	MaxEvents int `mapstructure:"max_events"`
	// MaxAge default DefaultBufferMaxAge.
	MaxAge time.Duration `mapstructure:"max_age"`
}

// Default returns the embedded defaults: bolt store in the working
// directory, no registration tokens, no VAPID keys (serve generates them),
// no upstreams.
func Default() Config {
	return Config{
		Listen: DefaultListen,
		Store: StoreConfig{
			Driver:   DefaultStoreDriver,
			Path:     DefaultStorePath,
			RedisURL: DefaultRedisURL,
			LeaseTTL: DefaultLeaseTTL,
		},
		Push: PushConfig{
			TTL:         DefaultTTL,
			Urgency:     DefaultUrgency,
			RewakeAfter: DefaultRewakeAfter,
		},
		Stream: StreamConfig{
			Heartbeat:    DefaultHeartbeat,
			Retry:        DefaultStreamRetry,
			MaxEventSize: DefaultMaxEventSize,
			SendBuffer:   DefaultSendBuffer,
		},
	}
}

// DefaultUpstream returns an Upstream with every default filled in; Load
// starts each entry of upstreams from it.
func DefaultUpstream() Upstream {
	return Upstream{
		Retry:  RetryConfig{Initial: DefaultRetryInitial, Max: DefaultRetryMax},
		Buffer: BufferConfig{MaxEvents: DefaultBufferMaxEvents, MaxAge: DefaultBufferMaxAge},
	}
}
