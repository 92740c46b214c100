package config

import (
	"log/slog"
	"maps"
	"net/url"
	"slices"
)

// LogValue lets a Config be logged whole (logger.Info("config loaded",
// "config", cfg)) without its secrets: registration tokens are counted,
// the VAPID private key and header values are left out, URLs lose their
// user info, query and fragment. Durations read "30s", not nanoseconds.
func (c Config) LogValue() slog.Value {
	ups := make([]any, len(c.Upstreams))
	for i, u := range c.Upstreams {
		ups[i] = map[string]any{
			"name":           u.Name,
			"url":            redactURL(u.URL),
			"shared":         u.IsShared(),
			"headers":        slices.Sorted(maps.Keys(u.Headers)),
			"device_headers": u.DeviceHeaders,
			"retry":          map[string]string{"initial": u.Retry.Initial.String(), "max": u.Retry.Max.String()},
			"buffer":         map[string]any{"max_events": u.Buffer.MaxEvents, "max_age": u.Buffer.MaxAge.String()},
		}
	}
	return slog.GroupValue(
		slog.String("source", c.Source),
		slog.String("listen", c.Listen),
		slog.Group("store",
			slog.String("driver", c.Store.Driver),
			slog.String("path", c.Store.Path),
			slog.String("redis_url", redactURL(c.Store.RedisURL)),
			slog.String("lease_ttl", c.Store.LeaseTTL.String()),
			slog.String("replica_id", c.Store.ReplicaID)),
		slog.Group("auth", slog.Int("registration_tokens", len(c.Auth.RegistrationTokens))),
		slog.Group("push",
			slog.String("vapid_public_key", c.Push.VAPIDPublicKey),
			slog.Bool("vapid_private_key_set", c.Push.VAPIDPrivateKey != ""),
			slog.String("subject", c.Push.Subject),
			slog.String("ttl", c.Push.TTL.String()),
			slog.String("urgency", c.Push.Urgency),
			slog.String("rewake_after", c.Push.RewakeAfter.String()),
			slog.Bool("allow_insecure_endpoints", c.Push.AllowInsecureEndpoints)),
		slog.Group("stream",
			slog.String("heartbeat", c.Stream.Heartbeat.String()),
			slog.String("retry", c.Stream.Retry.String()),
			slog.Int("max_event_size", c.Stream.MaxEventSize),
			slog.Int("send_buffer", c.Stream.SendBuffer)),
		slog.Any("upstreams", ups),
	)
}

// redactURL keeps what identifies the endpoint and drops what may be a
// credential: user info, the query and the fragment.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil { // a user name can be a token too
		u.User = url.User("xxxxx")
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
