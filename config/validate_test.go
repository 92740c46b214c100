package config_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/config"
)

func newVAPIDKeys(t testing.TB) (pub, priv string) {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(key.PublicKey().Bytes()), enc.EncodeToString(key.Bytes())
}

// valid returns a Config that uses every feature and validates.
func valid(t *testing.T) config.Config {
	t.Helper()
	c := config.Default()
	c.Auth.RegistrationTokens = []string{"tok-1", "tok-2"}
	c.Push.VAPIDPublicKey, c.Push.VAPIDPrivateKey = newVAPIDKeys(t)
	c.Push.Subject = "mailto:ops@example.com"
	perDevice := false
	news := config.DefaultUpstream()
	news.Name, news.URL = "news", "https://origin.example/events"
	news.Headers = map[string]string{"Authorization": "Bearer x"}
	mail := config.DefaultUpstream()
	mail.Name, mail.URL = "mail_2", "http://127.0.0.1:9000/sse?token=t"
	mail.Shared = &perDevice
	mail.DeviceHeaders = []string{"Authorization", "X-User"}
	c.Upstreams = []config.Upstream{news, mail}
	if err := c.Validate(); err != nil {
		t.Fatalf("base config does not validate: %v", err)
	}
	return c
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
	}{
		{"as is", func(*config.Config) {}},
		{"no VAPID keys and no subject", func(c *config.Config) { c.Push = config.Default().Push }},
		{"padded base64 keys", func(c *config.Config) {
			c.Push.VAPIDPublicKey += "="
			c.Push.VAPIDPrivateKey += "="
		}},
		{"https subject", func(c *config.Config) { c.Push.Subject = "https://example.com/contact" }},
		{"redis", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "rediss://u:p@redis.example:6380/3", LeaseTTL: config.DefaultLeaseTTL}
		}},
		{"redis over unix socket", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "unix:///run/redis.sock?db=1", LeaseTTL: config.DefaultLeaseTTL}
		}},
		{"listen on every interface, any port", func(c *config.Config) { c.Listen = ":0" }},
		{"listen on IPv6", func(c *config.Config) { c.Listen = "[::1]:8080" }},
		{"shared explicitly", func(c *config.Config) { yes := true; c.Upstreams[0].Shared = &yes }},
		{"retry max equal to initial", func(c *config.Config) { c.Upstreams[0].Retry.Max = c.Upstreams[0].Retry.Initial }},
		{"no upstreams", func(c *config.Config) { c.Upstreams = nil }},
		{"every urgency", func(c *config.Config) { c.Push.Urgency = "very-low" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			tc.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
		key    string // the key the error must name
		want   string // and a fragment of its message
	}{
		{"listen without port", func(c *config.Config) { c.Listen = "localhost" }, "listen", "want host:port"},
		{"listen empty", func(c *config.Config) { c.Listen = "" }, "listen", "want host:port"},
		{"listen bad port", func(c *config.Config) { c.Listen = "localhost:http" }, "listen", "not a number"},
		{"listen port too big", func(c *config.Config) { c.Listen = ":70000" }, "listen", "not a number"},
		{"store driver", func(c *config.Config) { c.Store.Driver = "sqlite" }, "store.driver", `"sqlite" is not "bolt" or "redis"`},
		{"store driver empty", func(c *config.Config) { c.Store.Driver = "" }, "store.driver", "is not"},
		{"bolt without path", func(c *config.Config) { c.Store.Path = "" }, "store.path", "required"},
		{"redis without url", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis"}
		}, "store.redis_url", "required"},
		{"redis url scheme", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "http://redis.example", LeaseTTL: config.DefaultLeaseTTL}
		}, "store.redis_url", "not a redis URL"},
		{"redis url unparsable", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "redis://h:6379/%zz", LeaseTTL: config.DefaultLeaseTTL}
		}, "store.redis_url", "not a URL"},
		{"redis url bad db", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "redis://h:6379/notadb", LeaseTTL: config.DefaultLeaseTTL}
		}, "store.redis_url", "not a redis URL"},
		{"cors origin with a path", func(c *config.Config) {
			c.Stream.CORSOrigins = []string{"https://app.example", "https://app.example/page"}
		}, "stream.cors_origins[1]", "not \"*\" or an origin"},
		{"lease ttl too short", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "redis://h:6379/0", LeaseTTL: 10 * time.Millisecond}
		}, "store.lease_ttl", "at least 100ms"},
		{"replica id with a space", func(c *config.Config) {
			c.Store = config.StoreConfig{Driver: "redis", RedisURL: "redis://h:6379/0", LeaseTTL: time.Second, ReplicaID: "a b"}
		}, "store.replica_id", "no white space"},
		{"empty token", func(c *config.Config) { c.Auth.RegistrationTokens[1] = "" },
			"auth.registration_tokens[1]", "empty token"},
		{"token with space", func(c *config.Config) { c.Auth.RegistrationTokens[0] = "a b" },
			"auth.registration_tokens[0]", "white space"},
		{"public key without private", func(c *config.Config) { c.Push.VAPIDPrivateKey = "" },
			"push.vapid_private_key", "required when vapid_public_key is set"},
		{"private key without public", func(c *config.Config) { c.Push.VAPIDPublicKey = "" },
			"push.vapid_public_key", "required when vapid_private_key is set"},
		{"keys without subject", func(c *config.Config) { c.Push.Subject = "" },
			"push.subject", "required when VAPID keys are set"},
		{"subject scheme", func(c *config.Config) { c.Push.Subject = "ops@example.com" },
			"push.subject", "must start with mailto: or https:"},
		{"subject http", func(c *config.Config) { c.Push.Subject = "http://example.com" },
			"push.subject", "must start with mailto: or https:"},
		{"subject empty mailto", func(c *config.Config) { c.Push.Subject = "mailto:" },
			"push.subject", "needs an address"},
		{"subject https without host", func(c *config.Config) { c.Push.Subject = "https:/nohost" },
			"push.subject", "not an https URL with a host"},
		{"subject checked without keys too", func(c *config.Config) {
			c.Push.VAPIDPublicKey, c.Push.VAPIDPrivateKey, c.Push.Subject = "", "", "ops"
		}, "push.subject", "must start with"},
		{"public key not base64", func(c *config.Config) { c.Push.VAPIDPublicKey = "!!!" },
			"push.vapid_public_key", "uncompressed P-256 point"},
		{"public key compressed", func(c *config.Config) {
			c.Push.VAPIDPublicKey = base64.RawURLEncoding.EncodeToString(append([]byte{2}, make([]byte, 32)...))
		}, "push.vapid_public_key", "uncompressed P-256 point"},
		{"private key short", func(c *config.Config) { c.Push.VAPIDPrivateKey = "AAAA" },
			"push.vapid_private_key", "32-byte"},
		{"private key zero", func(c *config.Config) {
			c.Push.VAPIDPrivateKey = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		}, "push.vapid_private_key", "not a valid P-256 private key"},
		{"keys of two pairs", func(c *config.Config) { c.Push.VAPIDPublicKey, _ = newVAPIDKeys(t) },
			"push.vapid_public_key", "does not belong to vapid_private_key"},
		{"urgency", func(c *config.Config) { c.Push.Urgency = "urgent" },
			"push.urgency", `"urgent" is not one of very-low, low, normal, high`},
		{"ttl zero", func(c *config.Config) { c.Push.TTL = 0 }, "push.ttl", "at least 1s"},
		{"ttl under a second", func(c *config.Config) { c.Push.TTL = 500 * time.Millisecond }, "push.ttl", "at least 1s"},
		{"rewake_after zero", func(c *config.Config) { c.Push.RewakeAfter = 0 }, "push.rewake_after", "must be > 0"},
		{"heartbeat negative", func(c *config.Config) { c.Stream.Heartbeat = -time.Second }, "stream.heartbeat", "must be > 0"},
		{"stream retry zero", func(c *config.Config) { c.Stream.Retry = 0 }, "stream.retry", "must be > 0"},
		{"max_event_size zero", func(c *config.Config) { c.Stream.MaxEventSize = 0 }, "stream.max_event_size", "must be > 0"},
		{"send_buffer zero", func(c *config.Config) { c.Stream.SendBuffer = 0 }, "stream.send_buffer", "must be > 0"},
		{"upstream without name", func(c *config.Config) { c.Upstreams[1].Name = "" }, "upstreams[1].name", "required"},
		{"upstream name upper case", func(c *config.Config) { c.Upstreams[0].Name = "News" },
			"upstreams[0].name", `"News" must match [a-z0-9_-]+`},
		{"upstream name with slash", func(c *config.Config) { c.Upstreams[0].Name = "a/b" },
			"upstreams[0].name", "must match"},
		{"duplicate upstream name", func(c *config.Config) { c.Upstreams[1].Name = "news" },
			"upstreams[1].name", `duplicate "news" (first at upstreams[0])`},
		{"upstream without url", func(c *config.Config) { c.Upstreams[0].URL = "" }, "upstreams[0].url", "required"},
		{"upstream url relative", func(c *config.Config) { c.Upstreams[0].URL = "/events" },
			"upstreams[0].url", "absolute http:// or https://"},
		{"upstream url scheme", func(c *config.Config) { c.Upstreams[0].URL = "ws://origin.example/" },
			"upstreams[0].url", "absolute http:// or https://"},
		{"upstream url without host", func(c *config.Config) { c.Upstreams[0].URL = "https:///events" },
			"upstreams[0].url", "has no host"},
		{"upstream url unparsable", func(c *config.Config) { c.Upstreams[0].URL = "https://a b/%zz" },
			"upstreams[0].url", "not a URL"},
		{"header name invalid", func(c *config.Config) { c.Upstreams[0].Headers["Bad Name"] = "x" },
			"upstreams[0].headers.Bad Name", "not a valid header name"},
		{"header value with newline", func(c *config.Config) { c.Upstreams[0].Headers["X-A"] = "a\r\nX-B: b" },
			"upstreams[0].headers.X-A", "control character"},
		{"header reserved", func(c *config.Config) { c.Upstreams[0].Headers["Last-Event-ID"] = "1" },
			"upstreams[0].headers.Last-Event-ID", "set by the gateway itself"},
		{"device_headers on a shared upstream", func(c *config.Config) { c.Upstreams[0].DeviceHeaders = []string{"X-User"} },
			"upstreams[0].device_headers", "only allowed with shared: false"},
		{"device_headers on explicitly shared", func(c *config.Config) {
			yes := true
			c.Upstreams[1].Shared = &yes
		}, "upstreams[1].device_headers", "only allowed with shared: false"},
		{"device header invalid", func(c *config.Config) { c.Upstreams[1].DeviceHeaders[1] = "X:User" },
			"upstreams[1].device_headers[1]", "not a valid header name"},
		{"device header reserved", func(c *config.Config) { c.Upstreams[1].DeviceHeaders[1] = "host" },
			"upstreams[1].device_headers[1]", "set by the gateway itself"},
		{"device header twice", func(c *config.Config) { c.Upstreams[1].DeviceHeaders[1] = "authorization" },
			"upstreams[1].device_headers[1]", "listed twice"},
		{"retry initial zero", func(c *config.Config) { c.Upstreams[0].Retry.Initial = 0 },
			"upstreams[0].retry.initial", "must be > 0"},
		{"retry max below initial", func(c *config.Config) { c.Upstreams[0].Retry.Max = 500 * time.Millisecond },
			"upstreams[0].retry.max", "less than retry.initial"},
		{"buffer max_events zero", func(c *config.Config) { c.Upstreams[1].Buffer.MaxEvents = 0 },
			"upstreams[1].buffer.max_events", "must be > 0"},
		{"buffer max_age zero", func(c *config.Config) { c.Upstreams[1].Buffer.MaxAge = 0 },
			"upstreams[1].buffer.max_age", "must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			prefix := "config: " + tc.key + ": "
			for line := range strings.Lines(err.Error()) {
				if strings.HasPrefix(line, prefix) && strings.Contains(line, tc.want) {
					return
				}
			}
			t.Errorf("error\n%v\nhas no line starting %q containing %q", err, prefix, tc.want)
		})
	}
}

// Every problem is reported at once, one per line, each a *FieldError.
func TestValidateReportsEveryProblem(t *testing.T) {
	c := valid(t)
	c.Listen = "nope"
	c.Store.Driver = "x"
	c.Push.Urgency = "x"
	c.Upstreams[1].Name = "news"
	err := c.Validate()
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 problems, got %d:\n%v", len(lines), err)
	}
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("not a joined error: %T", err)
	}
	for _, e := range multi.Unwrap() {
		if _, ok := e.(*config.FieldError); !ok {
			t.Errorf("%T is not a *FieldError", e)
		}
	}
}

// Messages never quote values that may be secrets.
func TestValidateDoesNotQuoteSecrets(t *testing.T) {
	c := valid(t)
	c.Store = config.StoreConfig{Driver: "redis", RedisURL: "redis://user:hunter2@h:6379/%zz", LeaseTTL: config.DefaultLeaseTTL}
	c.Upstreams[0].URL = "ftp://origin.example/?token=hunter2"
	c.Upstreams[1].URL = "http://a b/?token=hunter2"
	c.Push.VAPIDPublicKey = "hunter2"
	c.Auth.RegistrationTokens = []string{"hunter 2"}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter") {
		t.Errorf("error quotes a secret:\n%v", err)
	}
}
