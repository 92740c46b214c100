package bolt_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/bolt"
)

// wantOpenError opens path and checks the error wraps want and names the
// file, and that the file was left as it was.
func wantOpenError(t *testing.T, path string, want error) {
	t.Helper()
	before, _ := os.ReadFile(path)
	s, err := bolt.Open(path, bolt.Options{Timeout: 50 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded, want %v", filepath.Base(path), want)
	}
	if !errors.Is(err, want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open: %v; want an error naming the file and wrapping %v", err, want)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("a refused Open changed the file")
	}
}

func TestOpenCreatesMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s := openAt(t, path, bolt.Options{})
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if s.Path() != path {
		t.Fatalf("Path() = %q", s.Path())
	}
	// An empty file (touched by an installer, say) is a new store too.
	empty := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	openAt(t, empty, bolt.Options{})
	_, err := bolt.Open(filepath.Join(t.TempDir(), "no", "such", "dir.db"), bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), "dir.db") {
		t.Fatalf("Open in a missing directory: %v", err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	garbage := make([]byte, 64<<10)
	_, _ = rand.Read(garbage)
	wantOpenError(t, write("text.db", []byte(strings.Repeat("not a database\n", 1000))), store.ErrNotAStore)
	wantOpenError(t, write("garbage.db", garbage), store.ErrNotAStore)
	wantOpenError(t, write("short.db", []byte("x")), store.ErrNotAStore)

	other := filepath.Join(dir, "other.db")
	writeBolt(t, other, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("someone else's"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	wantOpenError(t, other, store.ErrNotAStore)
}

// writeBolt makes a bbolt file with fn, as another program (or another
// version of wakeline) would.
func writeBolt(t *testing.T, path string, fn func(*bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSchema(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "newer.db")
	s := openAt(t, path, bolt.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	set := func(key string, val []byte) {
		writeBolt(t, path, func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte(key), val) })
	}
	set("schema", binary.BigEndian.AppendUint64(nil, bolt.SchemaVersion+1))
	wantOpenError(t, path, store.ErrNewerSchema)
	set("schema", binary.BigEndian.AppendUint64(nil, bolt.SchemaVersion))
	openAt(t, path, bolt.Options{}).Close()
	set("schema", []byte("1"))
	wantOpenError(t, path, store.ErrNotAStore)
	set("schema", binary.BigEndian.AppendUint64(nil, bolt.SchemaVersion))
	set("format", []byte("somebody"))
	wantOpenError(t, path, store.ErrNotAStore)
}

// filledStore makes a store file of a megabyte and more and returns its
// path.
func filledStore(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "filled.db")
	s := openAt(t, path, bolt.Options{})
	data := strings.Repeat("d", 1000)
	for i := range 10 {
		events := make([]store.Event, 100)
		for j := range events {
			events[j] = store.Event{Type: "message", Data: data}
		}
		if _, err := s.Append(context.Background(), "u/s"+string(rune('a'+i%5)), events, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenRefusesDamagedFiles(t *testing.T) {
	path := filledStore(t)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(path)

	// Truncated (a copy cut short, a full disk): bbolt alone would fault.
	if err := os.Truncate(path, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, store.ErrNotAStore)

	// Both meta pages damaged.
	damaged := append([]byte(nil), whole...)
	for _, off := range []int{16, 4096 + 16} {
		copy(damaged[off:], "XXXXXXXX")
	}
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, store.ErrNotAStore)

	// A zeroed page in the middle: bbolt's page walk at open finds it.
	damaged = append([]byte(nil), whole...)
	mid := len(damaged) / 2 / 4096 * 4096
	clear(damaged[mid : mid+4096])
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, store.ErrNotAStore)
}

// TestOpenInUse opens a store held by another process: Open fails with
// ErrInUse after its timeout instead of hanging.
func TestOpenInUse(t *testing.T) {
	if path := os.Getenv("WAKELINE_BOLT_HOLD"); path != "" {
		holdStore(path)
		return
	}
	path := filepath.Join(t.TempDir(), "held.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenInUse$", "-test.count=1")
	// No race-detector pause at the child's exit: it would only slow us.
	cmd.Env = append(os.Environ(), "WAKELINE_BOLT_HOLD="+path, "GORACE=atexit_sleep_ms=0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "holding" {
	}
	start := time.Now()
	_, err = bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
	waited := time.Since(start)
	if !errors.Is(err, store.ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a held file: %v; want ErrInUse naming the file", err)
	}
	if waited > 5*time.Second {
		t.Fatalf("Open waited %v with a 100ms timeout", waited)
	}
	// Once the holder is gone the file opens.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	openAt(t, path, bolt.Options{})
}

// holdStore is the child of TestOpenInUse: it holds the store until its
// stdin closes.
func holdStore(path string) {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("holding\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

func TestOpenInUseSameProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "held.db")
	openAt(t, path, bolt.Options{})
	_, err := bolt.Open(path, bolt.Options{Timeout: -1})
	if !errors.Is(err, store.ErrInUse) {
		t.Fatalf("second Open in one process: %v; want ErrInUse", err)
	}
}

// TestOpenSurvivesFlips damages a store one byte at a time: Open either
// refuses the file with ErrNotAStore or opens it, and then reading
// everything returns data or errors, never a crash.
func TestOpenSurvivesFlips(t *testing.T) {
	path := filledStore(t)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("WAKELINE_FLIP_SEED"), 10, 64); err == nil {
		seed = v // to replay a failure
	}
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))
	refused := 0
	const flips = 200
	for range flips {
		damaged := append([]byte(nil), whole...)
		off := rng.IntN(len(damaged))
		if rng.IntN(2) == 0 {
			off = off/4096*4096 + rng.IntN(64) // headers and first elements
		}
		damaged[off] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			if !errors.Is(err, store.ErrNotAStore) {
				t.Fatalf("flip at %d: %v", off, err)
			}
			refused++
			if strings.Contains(err.Error(), "corrupt file") {
				// bbolt panicked: its goroutines and file lock may be left.
				t.Fatalf("flip at %d got past the page check: %v", off, err)
			}
			continue
		}
		for _, stream := range []string{"u/sa", "u/sb", "u/sc", "u/sd", "u/se"} {
			var after uint64
			for {
				p, err := s.Read(context.Background(), stream, after, 100)
				if err != nil || p.Gap || len(p.Events) == 0 {
					break
				}
				if last := p.Events[len(p.Events)-1].Pos; last > after {
					after = last
				} else {
					t.Fatalf("flip at %d: Read after %d returned up to %d", off, after, last)
				}
			}
			_, _ = s.Lookup(context.Background(), stream, "nope")
			_, _ = s.Evict(context.Background(), stream, store.Retention{MaxEvents: 10}, time.Now(), 50)
		}
		s.Close()
	}
	t.Logf("%d of %d damaged files refused", refused, flips)
}
