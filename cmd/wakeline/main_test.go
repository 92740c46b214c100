package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// asMainEnv makes the test binary run as the wakeline command itself, so
// the cluster test starts real gateway processes without a go build.
const asMainEnv = "WAKELINE_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// clearEnv blanks every WAKELINE_* variable (the loader ignores empty
// ones) so the tests see only what they set.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "WAKELINE_") {
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

type result struct {
	code           int
	stdout, stderr string
}

func runArgs(ctx context.Context, args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

const goodConfig = `
listen: 127.0.0.1:0
auth: {registration_tokens: [t1]}
push: {subject: mailto:ops@example.com}
upstreams:
  - name: news
    url: https://origin.example/events
    headers: {Authorization: Bearer x}
`

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		file       string            // written to a temp file, passed with --config unless viaEnv
		viaEnv     bool              // pass the file in WAKELINE_CONFIG instead
		noFile     bool              // pass no file at all
		env        map[string]string // extra environment
		extra      []string          // extra arguments
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{name: "good file", file: goodConfig, wantCode: exitOK, wantStdout: "config OK\n"},
		{name: "good file from WAKELINE_CONFIG", file: goodConfig, viaEnv: true, wantCode: exitOK, wantStdout: "config OK\n"},
		{name: "no file at all", noFile: true, wantCode: exitOK,
			wantStdout: "config OK (no config file: embedded defaults and WAKELINE_* environment)\n"},
		{name: "bad value names the key",
			file:     goodConfig + "  - name: news\n    url: https://other.example/\n",
			wantCode: exitUsage, wantStderr: []string{`config: upstreams[1].name: duplicate "news"`}},
		{name: "several problems, one per line",
			file:     "listen: nowhere\nstore: {driver: sqlite}\n",
			wantCode: exitUsage, wantStderr: []string{"config: listen: want host:port", "\nconfig: store.driver: "}},
		{name: "unknown key", file: "store:\n  drvier: redis\n",
			wantCode: exitUsage, wantStderr: []string{"config: store.drvier: unknown key"}},
		{name: "bad duration", file: "push: {ttl: 5 minutes}\n",
			wantCode: exitUsage, wantStderr: []string{`config: push.ttl: bad duration "5 minutes"`}},
		{name: "keys without subject", file: "push: {vapid_public_key: x}\n",
			wantCode: exitUsage, wantStderr: []string{"config: push.vapid_private_key: required"}},
		{name: "environment makes it bad", file: goodConfig, env: map[string]string{"WAKELINE_STORE_DRIVER": "sqlite"},
			wantCode: exitUsage, wantStderr: []string{"config: store.driver: \"sqlite\""}},
		{name: "missing file", noFile: true, extra: []string{"--config", "/nonexistent/wakeline.yaml"},
			wantCode: exitUsage, wantStderr: []string{"no such file"}},
		{name: "stray argument", file: goodConfig, extra: []string{"now"},
			wantCode: exitUsage, wantStderr: []string{`unknown command "now"`, "Run 'wakeline config check --help'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := []string{"config", "check"}
			if !tc.noFile {
				path := writeFile(t, tc.file)
				if tc.viaEnv {
					t.Setenv("WAKELINE_CONFIG", path)
				} else {
					args = append(args, "--config", path)
				}
			}
			r := runArgs(t.Context(), append(args, tc.extra...)...)
			if r.code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, tc.wantCode, r.stderr)
			}
			if r.stdout != tc.wantStdout {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantStdout)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if len(tc.wantStderr) == 0 && r.stderr != "" {
				t.Errorf("unexpected stderr:\n%s", r.stderr)
			}
		})
	}
}

// logLines parses stderr as JSON log lines.
func logLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stderr line is not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// serve with a context already cancelled, as after a first SIGTERM: it
// loads, validates, logs in JSON and returns 0.
func TestServe(t *testing.T) {
	cancelled, cancel := context.WithCancelCause(t.Context())
	cancel(context.Canceled)

	t.Run("config file", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("WAKELINE_STORE_PATH", filepath.Join(t.TempDir(), "w.db"))
		r := runArgs(cancelled, "serve", "--config", writeFile(t, goodConfig))
		if r.code != exitOK {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		lines := logLines(t, r.stderr)
		if len(lines) == 0 || lines[0]["msg"] != "config loaded" {
			t.Fatalf("first log line is not \"config loaded\":\n%s", r.stderr)
		}
		if strings.Contains(r.stderr, "Bearer x") {
			t.Errorf("a header value reached the log:\n%s", r.stderr)
		}
	})
	t.Run("embedded defaults", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("WAKELINE_STORE_PATH", filepath.Join(t.TempDir(), "w.db"))
		t.Setenv("WAKELINE_LISTEN", "127.0.0.1:0")
		r := runArgs(cancelled, "serve")
		if r.code != exitOK {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		lines := logLines(t, r.stderr)
		if len(lines) == 0 || lines[0]["msg"] != "no config file, running on embedded defaults" {
			t.Fatalf("the log does not say it runs on defaults:\n%s", r.stderr)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		clearEnv(t)
		r := runArgs(cancelled, "serve", "--config", writeFile(t, "stream: {heartbeat: 0s}\n"))
		if r.code != exitUsage || !strings.Contains(r.stderr, "config: stream.heartbeat: must be > 0") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
}

func TestUsage(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args       []string
		wantCode   int
		wantOutput string // in stdout or stderr
	}{
		{nil, exitOK, "Available Commands"},
		{[]string{"--help"}, exitOK, "Available Commands"},
		{[]string{"frob"}, exitUsage, `unknown command "frob" for "wakeline"`},
		{[]string{"config", "chekc"}, exitUsage, `unknown command "chekc" for "wakeline config"`},
		{[]string{"config"}, exitOK, "check"},
		{[]string{"serve", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"serve", "extra"}, exitUsage, "Run 'wakeline serve --help' for usage."},
		{[]string{"version"}, exitOK, "wakeline "},
		{[]string{"--version"}, exitOK, "wakeline "},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runArgs(t.Context(), tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout+r.stderr, tc.wantOutput) {
				t.Errorf("exit %d (want %d); output does not contain %q?\nstdout:\n%s\nstderr:\n%s",
					r.code, tc.wantCode, tc.wantOutput, r.stdout, r.stderr)
			}
		})
	}
}
