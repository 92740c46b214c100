package config_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLogValueHidesSecrets(t *testing.T) {
	c := valid(t)
	c.Auth.RegistrationTokens = []string{"reg-secret"}
	c.Upstreams[0].Headers = map[string]string{"Authorization": "Bearer header-secret"}
	c.Upstreams[0].URL = "https://user:url-secret@origin.example/events?key=query-secret#frag-secret"
	c.Store.RedisURL = "redis://:redis-secret@db:6379/0"

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	for _, secret := range []string{"reg-secret", "header-secret", "url-secret", "query-secret",
		"frag-secret", "redis-secret", c.Push.VAPIDPrivateKey} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	var rec struct {
		Config struct {
			Listen    string `json:"listen"`
			Upstreams []struct {
				Name    string   `json:"name"`
				URL     string   `json:"url"`
				Headers []string `json:"headers"`
			} `json:"upstreams"`
		} `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	got := rec.Config
	if got.Listen != c.Listen || len(got.Upstreams) != 2 || got.Upstreams[0].Name != "news" ||
		got.Upstreams[0].URL != "https://xxxxx@origin.example/events?xxxxx" ||
		len(got.Upstreams[0].Headers) != 1 || got.Upstreams[0].Headers[0] != "Authorization" {
		t.Errorf("log lost what identifies the config:\n%s", out)
	}
}
