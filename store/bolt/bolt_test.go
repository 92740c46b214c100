package bolt_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/bolt"
	"github.com/wakeline/wakeline/store/storetest"
)

func openAt(t testing.TB, path string, opts bolt.Options) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "wakeline.db"), bolt.Options{})
	})
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	storetest.RunReopen(t, func(t *testing.T, place string) store.Store {
		return openAt(t, filepath.Join(dir, place+".db"), bolt.Options{})
	})
}

func TestCrash(t *testing.T) {
	storetest.RunCrash(t, func(place string) (store.Store, error) {
		return bolt.Open(place+".db", bolt.Options{})
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		return openAt(b, filepath.Join(b.TempDir(), "bench.db"), bolt.Options{})
	})
}
