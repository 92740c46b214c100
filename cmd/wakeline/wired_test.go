package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/config"
)

func TestDemoTellsTheWholeStory(t *testing.T) {
	r := runArgs(t.Context(), "demo")
	if r.code != exitOK {
		t.Fatalf("demo exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"registered with the gateway",
		"ONE wake message",
		`"type":"wakeline.wake"`,
		"replayed id=2", "replayed id=3", "replayed id=4",
		"live     id=5",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestVapidPrintsAPairTheConfigAccepts(t *testing.T) {
	r := runArgs(t.Context(), "vapid")
	if r.code != exitOK {
		t.Fatalf("vapid exit %d: %s", r.code, r.stderr)
	}
	clearEnv(t)
	path := writeFile(t, r.stdout)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the snippet does not load: %v\n%s", err, r.stdout)
	}
	if cfg.Push.Subject == "" {
		cfg.Push.Subject = "mailto:ops@example.com"
	}
	if err := cfg.Validate(); err != nil || cfg.Push.VAPIDPrivateKey == "" {
		t.Fatalf("the snippet does not validate: %v\n%s", err, r.stdout)
	}
}

func TestHealthcheck(t *testing.T) {
	for _, c := range []struct {
		status, code int
	}{{200, exitOK}, {503, exitRuntime}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(c.status) }))
		r := runArgs(t.Context(), "healthcheck", "--url", srv.URL)
		srv.Close()
		if r.code != c.code {
			t.Errorf("server %d: exit %d, want %d (%s)", c.status, r.code, c.code, r.stderr)
		}
	}
	if r := runArgs(t.Context(), "healthcheck", "--url", "http://127.0.0.1:1/healthz"); r.code != exitRuntime {
		t.Errorf("nothing listening: exit %d", r.code)
	}
}

// serve, the real command, answers on its port and stops on cancel.
func TestServeAnswersThenStops(t *testing.T) {
	clearEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "wakeline.yaml")
	conf := fmt.Sprintf("listen: %s\nstore: {path: %s}\nauth: {registration_tokens: [t1]}\npush: {subject: mailto:ops@example.com}\n", addr, filepath.Join(dir, "w.db"))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan result, 1)
	go func() { done <- runArgs(ctx, "serve", "--config", path) }()

	base := "http://" + addr
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for probe(t.Context(), base+"/readyz") != nil {
		select {
		case r := <-done:
			t.Fatalf("serve exited %d: %s", r.code, r.stderr)
		case <-tick.C:
		}
	}
	resp, err := http.Post(base+"/v1/devices", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated registration: %d", resp.StatusCode)
	}
	cancel()
	if r := <-done; r.code != exitOK {
		t.Fatalf("serve exit %d after cancel: %s", r.code, r.stderr)
	}
}

func TestDefaultHealthURL(t *testing.T) {
	for in, want := range map[string]string{
		"":               "http://127.0.0.1:8080/healthz",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/healthz",
		"[::]:9000":      "http://127.0.0.1:9000/healthz",
		":9000":          "http://127.0.0.1:9000/healthz",
		"10.1.2.3:8080":  "http://10.1.2.3:8080/healthz",
		"not an address": "http://127.0.0.1:8080/healthz",
	} {
		if got := defaultHealthURL(in); got != want {
			t.Errorf("defaultHealthURL(%q) = %q, want %q", in, got, want)
		}
	}
}
