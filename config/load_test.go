package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/config"
)

// clearEnv blanks every WAKELINE_* variable for the test; the loader
// ignores empty variables, so the test sees only what it sets itself.
func clearEnv(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, config.EnvPrefix+"_") {
			t.Setenv(name, "")
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wakeline.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadYAML(t *testing.T, content string) (config.Config, error) {
	t.Helper()
	return config.Load(writeFile(t, content))
}

func TestLoadWithoutFileGivesDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("Load(\"\") = %+v, want Default() %+v", cfg, config.Default())
	}
	if cfg.Source != "" {
		t.Errorf("Source = %q, want \"\" for embedded defaults", cfg.Source)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestLoadFileFromEnvironment(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "listen: 127.0.0.1:9999\n")
	t.Setenv(config.EnvConfigFile, path)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source != path || cfg.Listen != "127.0.0.1:9999" {
		t.Errorf("Source, Listen = %q, %q; want %q, 127.0.0.1:9999", cfg.Source, cfg.Listen, path)
	}
}

func TestLoadEmptyFile(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "# nothing but a comment\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Source = path
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want defaults with Source", cfg)
	}
}

// The example of INTERFACE.md, verbatim in testdata, loads to exactly
// what it says and validates with its VAPID keys empty, and with both set.
func TestInterfaceExampleRoundTrip(t *testing.T) {
	clearEnv(t)
	path := filepath.Join("testdata", "interface-example.yaml")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	shared := true
	want := config.Config{
		Listen: "127.0.0.1:8080",
		Store:  config.StoreConfig{Driver: "bolt", Path: "wakeline.db", RedisURL: "redis://127.0.0.1:6379/0", LeaseTTL: config.DefaultLeaseTTL},
		Auth:   config.AuthConfig{RegistrationTokens: []string{"change-me"}},
		Push: config.PushConfig{Subject: "mailto:ops@example.com", TTL: 5 * time.Minute,
			Urgency: "high", RewakeAfter: 30 * time.Second},
		Stream: config.StreamConfig{Heartbeat: 15 * time.Second, Retry: config.DefaultStreamRetry,
			MaxEventSize: config.DefaultMaxEventSize, SendBuffer: config.DefaultSendBuffer},
		Upstreams: []config.Upstream{{
			Name:          "news",
			URL:           "https://origin.example/events",
			Headers:       map[string]string{"Authorization": "Bearer origin-secret"},
			Shared:        &shared,
			DeviceHeaders: []string{},
			Retry:         config.RetryConfig{Initial: time.Second, Max: time.Minute},
			Buffer:        config.BufferConfig{MaxEvents: 10000, MaxAge: 24 * time.Hour},
		}},
		Source: path,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("example loaded as\n%+v\nwant\n%+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("example with empty VAPID keys: %v", err)
	}

	pub, priv := newVAPIDKeys(t)
	t.Setenv("WAKELINE_PUSH_VAPID_PUBLIC_KEY", pub)
	t.Setenv("WAKELINE_PUSH_VAPID_PRIVATE_KEY", priv)
	cfg, err = config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Push.VAPIDPublicKey != pub || cfg.Push.VAPIDPrivateKey != priv {
		t.Fatal("VAPID keys from the environment not applied")
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("example with VAPID keys filled: %v", err)
	}
}

// Viper lower-cases map keys; header names must come back as written.
func TestHeaderNamesKeepTheirCase(t *testing.T) {
	clearEnv(t)
	cfg, err := loadYAML(t, `
upstreams:
  - name: a
    url: https://a.example/events
    headers:
      Authorization: Bearer one
      X-API-Key: k1
      x-lower: "v"
      X-Number: 42
  - name: b
    url: https://b.example/events
    headers: {authorization: Bearer two}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"Authorization": "Bearer one", "X-API-Key": "k1", "x-lower": "v", "X-Number": "42"},
		{"authorization": "Bearer two"},
	}
	for i, w := range want {
		if got := cfg.Upstreams[i].Headers; !reflect.DeepEqual(got, w) {
			t.Errorf("upstreams[%d].headers = %v, want %v", i, got, w)
		}
	}
}

func TestUpstreamDefaultsPerEntry(t *testing.T) {
	clearEnv(t)
	cfg, err := loadYAML(t, `
upstreams:
  - name: a
    url: https://a.example/events
    retry: {initial: 2s}
  - name: b
    url: https://b.example/events
    shared: false
    device_headers: [Authorization]
    buffer: {max_age: 1h}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Upstreams[0], cfg.Upstreams[1]
	if a.Retry != (config.RetryConfig{Initial: 2 * time.Second, Max: config.DefaultRetryMax}) {
		t.Errorf("a.retry = %+v, want initial 2s and the default max", a.Retry)
	}
	if a.Buffer != (config.BufferConfig{MaxEvents: config.DefaultBufferMaxEvents, MaxAge: config.DefaultBufferMaxAge}) {
		t.Errorf("a.buffer = %+v, want defaults", a.Buffer)
	}
	if a.Shared != nil || !a.IsShared() {
		t.Errorf("a: Shared = %v, IsShared = %v; want nil, true", a.Shared, a.IsShared())
	}
	if b.IsShared() || !reflect.DeepEqual(b.DeviceHeaders, []string{"Authorization"}) {
		t.Errorf("b: IsShared = %v, device_headers = %v", b.IsShared(), b.DeviceHeaders)
	}
	if b.Buffer != (config.BufferConfig{MaxEvents: config.DefaultBufferMaxEvents, MaxAge: time.Hour}) {
		t.Errorf("b.buffer = %+v", b.Buffer)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestEnvOverrides(t *testing.T) {
	const file = `
listen: 127.0.0.1:8080
store: {driver: bolt, path: from-file.db}
push: {ttl: 5m, subject: mailto:file@example.com}
`
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(config.Config) bool
	}{
		{"listen over file", map[string]string{"WAKELINE_LISTEN": "0.0.0.0:80"},
			func(c config.Config) bool { return c.Listen == "0.0.0.0:80" }},
		{"driver over file", map[string]string{"WAKELINE_STORE_DRIVER": "redis"},
			func(c config.Config) bool { return c.Store.Driver == "redis" && c.Store.Path == "from-file.db" }},
		{"key the file does not set", map[string]string{"WAKELINE_STORE_REDIS_URL": "redis://db:6379/2"},
			func(c config.Config) bool { return c.Store.RedisURL == "redis://db:6379/2" }},
		{"nested key the file does not set", map[string]string{"WAKELINE_PUSH_VAPID_PRIVATE_KEY": "secret"},
			func(c config.Config) bool { return c.Push.VAPIDPrivateKey == "secret" }},
		{"section the file does not have", map[string]string{"WAKELINE_STREAM_HEARTBEAT": "1m"},
			func(c config.Config) bool { return c.Stream.Heartbeat == time.Minute }},
		{"duration", map[string]string{"WAKELINE_PUSH_TTL": "90s"},
			func(c config.Config) bool { return c.Push.TTL == 90*time.Second }},
		{"tokens comma and space separated", map[string]string{"WAKELINE_AUTH_REGISTRATION_TOKENS": "a,b c, d"},
			func(c config.Config) bool {
				return reflect.DeepEqual(c.Auth.RegistrationTokens, []string{"a", "b", "c", "d"})
			}},
		{"bool", map[string]string{"WAKELINE_PUSH_ALLOW_INSECURE_ENDPOINTS": "true"},
			func(c config.Config) bool { return c.Push.AllowInsecureEndpoints }},
		{"int", map[string]string{"WAKELINE_STREAM_MAX_EVENT_SIZE": "4096"},
			func(c config.Config) bool { return c.Stream.MaxEventSize == 4096 }},
		{"empty variable is ignored", map[string]string{"WAKELINE_LISTEN": ""},
			func(c config.Config) bool { return c.Listen == "127.0.0.1:8080" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := loadYAML(t, file)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("override not applied: %+v", cfg)
			}
		})
	}
}

func TestEnvOverridesWithoutFile(t *testing.T) {
	clearEnv(t)
	t.Setenv("WAKELINE_STORE_DRIVER", "redis")
	t.Setenv("WAKELINE_AUTH_REGISTRATION_TOKENS", "t1 t2")
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Driver != "redis" || len(cfg.Auth.RegistrationTokens) != 2 || cfg.Source != "" {
		t.Errorf("got %+v", cfg)
	}
}

func TestEnvName(t *testing.T) {
	if got := config.EnvName("push.vapid_private_key"); got != "WAKELINE_PUSH_VAPID_PRIVATE_KEY" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		env     map[string]string
		want    []string // each must appear in the error
		unknown bool     // errors.Is(err, ErrUnknownKey)
	}{
		{name: "unknown top-level key", yaml: "lsiten: :80\n",
			want: []string{"config: lsiten: unknown key"}, unknown: true},
		{name: "unknown nested key", yaml: "store:\n  drvier: redis\n",
			want: []string{"config: store.drvier: unknown key"}, unknown: true},
		{name: "unknown key in an upstream", yaml: "upstreams:\n  - name: a\n    url: https://a/\n    retyr: {initial: 1s}\n",
			want: []string{"config: upstreams[0].retyr: unknown key"}, unknown: true},
		{name: "unknown key deep in an upstream", yaml: "upstreams:\n  - {name: a}\n  - {name: b, buffer: {max_evnts: 3}}\n",
			want: []string{"config: upstreams[1].buffer.max_evnts: unknown key"}, unknown: true},
		{name: "several unknown keys", yaml: "foo: 1\npush: {bar: 2}\n",
			want: []string{"config: foo: unknown key", "config: push.bar: unknown key"}, unknown: true},
		{name: "unknown keys beside a bad value", yaml: "push: {ttl: 5 minutes, bar: 1}\nfoo: 2\n",
			want:    []string{"config: foo: unknown key", "config: push.bar: unknown key", "config: push.ttl: bad duration"},
			unknown: true},
		{name: "unknown key keeps its case", yaml: "Store: {Drvier: x}\n",
			want: []string{"config: Store.Drvier: unknown key"}, unknown: true},
		{name: "source is not a key", yaml: "source: x\n",
			want: []string{"config: source: unknown key"}, unknown: true},
		{name: "bad duration", yaml: "push:\n  ttl: 5 minutes\n",
			want: []string{`config: push.ttl: bad duration "5 minutes"`}},
		{name: "duration without unit", yaml: "stream:\n  heartbeat: 15\n",
			want: []string{"config: stream.heartbeat: bad duration 15: a unit is needed"}},
		{name: "bad duration in an upstream", yaml: "upstreams:\n  - {name: a, retry: {max: forever}}\n",
			want: []string{`config: upstreams[0].retry.max: bad duration "forever"`}},
		{name: "bad duration from the environment", env: map[string]string{"WAKELINE_PUSH_REWAKE_AFTER": "soon"},
			want: []string{`config: push.rewake_after: bad duration "soon"`}},
		{name: "bad bool from the environment", env: map[string]string{"WAKELINE_PUSH_ALLOW_INSECURE_ENDPOINTS": "maybe"},
			want: []string{"config: push.allow_insecure_endpoints:"}},
		{name: "bad int", yaml: "stream: {send_buffer: lots}\n",
			want: []string{"config: stream.send_buffer:"}},
		{name: "section is a scalar", yaml: "store: bolt\n",
			want: []string{"config: store:"}},
		{name: "upstreams not a list", yaml: "upstreams: news\n",
			want: []string{"config: upstreams: must be a list, got a string"}},
		{name: "upstream entry not a mapping", yaml: "upstreams: [news]\n",
			want: []string{"config: upstreams[0]:"}},
		{name: "keys differing in case", yaml: "listen: :1\nListen: :2\n",
			want: []string{`config: listen: given twice, as "Listen" and "listen"`}},
		{name: "header names differing in case",
			yaml: "upstreams:\n  - name: a\n    headers: {Authorization: x, authorization: y}\n",
			want: []string{`config: upstreams[0].headers.authorization: given twice`}},
		{name: "yaml syntax", yaml: "listen: [\n", want: []string{"config: ", "yaml:"}},
		{name: "yaml duplicate key", yaml: "listen: :1\nlisten: :2\n", want: []string{"config: ", "already defined"}},
		{name: "top level is a list", yaml: "- a\n- b\n", want: []string{"top level must be a mapping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := loadYAML(t, tc.yaml)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if got := errors.Is(err, config.ErrUnknownKey); got != tc.unknown {
				t.Errorf("errors.Is(err, ErrUnknownKey) = %v, want %v", got, tc.unknown)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	clearEnv(t)
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file: %v", err)
	}
	big := "# " + strings.Repeat("x", config.MaxFileSize) + "\n"
	if _, err := loadYAML(t, big); !errors.Is(err, config.ErrFileTooLarge) {
		t.Errorf("large file: %v", err)
	}
}
