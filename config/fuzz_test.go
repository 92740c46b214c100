package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wakeline/wakeline/config"
)

// FuzzLoad: whatever the file holds, Load and Validate return (no panic)
// and every error they give carries the package prefix.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("testdata", "interface-example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		"",
		"listen: :1\nListen: :2\n",
		"upstreams: [{name: a, headers: {A: 1, a: 2}}]\n",
		"upstreams: {name: a}\n",
		"upstreams: [[1, 2], 3, {retry: 5}]\n",
		"store: {driver: [1]}\npush: {ttl: {a: b}}\n",
		"1: 2\n? [a]\n: b\n",
		"a: &x [*x]\n",
		"push: {ttl: 1e400}\n",
	} {
		f.Add([]byte(seed))
	}
	clearEnv(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error without prefix: %q", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			for line := range strings.Lines(err.Error()) {
				if !strings.HasPrefix(line, "config: ") {
					t.Errorf("validation line without prefix: %q", line)
				}
			}
		}
	})
}
