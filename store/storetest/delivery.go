package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

func wantCursor(t testing.TB, s store.Store, device, upstream string, wantPos uint64, wantPending int64) {
	t.Helper()
	pos, pending, err := s.Cursor(context.Background(), device, upstream)
	if err != nil || pos != wantPos || pending != wantPending {
		t.Fatalf("Cursor(%s, %s) = %d, %d, %v; want %d, %d", device, upstream, pos, pending, err, wantPos, wantPending)
	}
}

func testCursor(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	wantCursor(t, s, "dev1", "news", 0, 0) // nothing appended yet
	mustAppend(t, s, "u/news", evs("n", 10), "n10")
	wantCursor(t, s, "dev1", "news", 0, 10)
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "news", 3))
	wantCursor(t, s, "dev1", "news", 3, 7)
	must(t, "SetCursor backwards", s.SetCursor(ctx, "dev1", "news", 2))
	wantCursor(t, s, "dev1", "news", 3, 7)
	must(t, "SetCursor same", s.SetCursor(ctx, "dev1", "news", 3))
	wantCursor(t, s, "dev1", "news", 3, 7)
	must(t, "SetCursor to last", s.SetCursor(ctx, "dev1", "news", 10))
	wantCursor(t, s, "dev1", "news", 10, 0)
	mustAppend(t, s, "u/news", evs("o", 2), "o2")
	wantCursor(t, s, "dev1", "news", 10, 2)
	// Cursors are per upstream.
	wantCursor(t, s, "dev1", "mail", 0, 0)
}

func testCursorNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	for _, c := range []struct{ device, upstream string }{{"nobody", "news"}, {"dev1", "sports"}} {
		_, _, err := s.Cursor(ctx, c.device, c.upstream)
		wantErr(t, "Cursor "+c.device+"/"+c.upstream, err, store.ErrNotFound)
		wantErr(t, "SetCursor", s.SetCursor(ctx, c.device, c.upstream, 1), store.ErrNotFound)
		_, err = s.ClaimWake(ctx, c.device, c.upstream, t0, time.Minute)
		wantErr(t, "ClaimWake", err, store.ErrNotFound)
		wantErr(t, "ClearWake", s.ClearWake(ctx, c.device, c.upstream), store.ErrNotFound)
	}
}

func testCursorPendingAfterEvict(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	mustAppend(t, s, "u/news", evs("n", 10), "n10")
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "news", 2))
	if _, err := s.Evict(ctx, "u/news", store.Retention{MaxEvents: 5}, t0, 100); err != nil {
		t.Fatal(err)
	}
	wantCursor(t, s, "dev1", "news", 2, 5) // only kept events count
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "news", 8))
	wantCursor(t, s, "dev1", "news", 8, 2)
	if _, err := s.Evict(ctx, "u/news", store.Retention{MaxAge: time.Second}, t0.Add(time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	wantCursor(t, s, "dev1", "news", 8, 0)
}

// testSetCursors checks the optional batch write of cursors, when the
// store offers it: SetCursor's rules, and gone devices skipped.
func testSetCursors(t *testing.T, s store.Store) {
	b, ok := s.(store.CursorBatcher)
	if !ok {
		t.Skip("the store has no SetCursors")
	}
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	mustCreate(t, s, device("dev2"))
	mustAppend(t, s, "u/news", evs("n", 10), "n10")
	must(t, "SetCursors", b.SetCursors(ctx, []store.CursorUpdate{
		{Device: "dev1", Upstream: "news", Pos: 4},
		{Device: "dev2", Upstream: "news", Pos: 7},
		{Device: "ghost", Upstream: "news", Pos: 1},  // no such device: skipped
		{Device: "dev1", Upstream: "sports", Pos: 1}, // no such upstream: skipped
	}))
	wantCursor(t, s, "dev1", "news", 4, 6)
	wantCursor(t, s, "dev2", "news", 7, 3)
	must(t, "SetCursors backwards", b.SetCursors(ctx, []store.CursorUpdate{{Device: "dev1", Upstream: "news", Pos: 2}}))
	wantCursor(t, s, "dev1", "news", 4, 6)
	must(t, "SetCursors empty", b.SetCursors(ctx, nil))
}

func testClaimWake(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	const rewake = 30 * time.Second
	claim := func(up string, at time.Time, want bool) {
		t.Helper()
		ok, err := s.ClaimWake(ctx, "dev1", up, at, rewake)
		if err != nil || ok != want {
			t.Fatalf("ClaimWake(%s, t0%+v) = %v, %v; want %v", up, at.Sub(t0), ok, err, want)
		}
	}
	claim("news", t0, true)
	claim("news", t0.Add(time.Second), false)
	claim("news", t0.Add(rewake-1), false)
	claim("mail", t0, true) // per upstream
	claim("news", t0.Add(rewake), true)
	claim("news", t0.Add(rewake+time.Second), false) // the rewake is the new claim
	must(t, "ClearWake", s.ClearWake(ctx, "dev1", "news"))
	claim("news", t0.Add(rewake+2*time.Second), true)
	must(t, "ClearWake", s.ClearWake(ctx, "dev1", "news"))
	must(t, "ClearWake when none is outstanding", s.ClearWake(ctx, "dev1", "news"))
	claim("mail", t0.Add(time.Second), false) // untouched by news
}

func testClaimWakeConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	for round := range 5 {
		at := t0.Add(time.Duration(round) * time.Hour)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				ok, err := s.ClaimWake(ctx, "dev1", "news", at, time.Hour)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d concurrent claims won, want 1", round, wins.Load())
		}
	}
}

func testVAPIDKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	boom := errors.New("no entropy")
	_, err := s.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) { return store.VAPIDKeys{}, boom })
	wantErr(t, "VAPIDKeys with a failing generator", err, boom)
	first := store.VAPIDKeys{Public: "pub-1", Private: "priv-1"}
	calls := 0
	gen := func(k store.VAPIDKeys) func() (store.VAPIDKeys, error) {
		return func() (store.VAPIDKeys, error) { calls++; return k, nil }
	}
	got, err := s.VAPIDKeys(ctx, gen(first))
	if err != nil || got != first || calls != 1 {
		t.Fatalf("first VAPIDKeys = %+v, %v after %d calls", got, err, calls)
	}
	got, err = s.VAPIDKeys(ctx, gen(store.VAPIDKeys{Public: "pub-2", Private: "priv-2"}))
	if err != nil || got != first || calls != 1 {
		t.Fatalf("second VAPIDKeys = %+v, %v after %d generator calls; want the stored pair, no call", got, err, calls)
	}
}

func testVAPIDKeysConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 12
	got := make([]store.VAPIDKeys, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := s.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) {
				return store.VAPIDKeys{Public: fmt.Sprintf("pub-%d", i), Private: fmt.Sprintf("priv-%d", i)}, nil
			})
			if err != nil {
				t.Error(err)
			}
			got[i] = k
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] || got[i].Public == "" {
			t.Fatalf("concurrent VAPIDKeys disagree: %+v", got)
		}
	}
}

// testClose checks that every method fails with store.ErrClosed after
// Close, and that Close is idempotent.
func testClose(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	mustAppend(t, s, "u/news", evs("n", 2), "n2")
	must(t, "Close", s.Close())
	calls := map[string]func() error{
		"Append": func() error { _, err := s.Append(ctx, "u/news", evs("x", 1), ""); return err },
		"Read":   func() error { _, err := s.Read(ctx, "u/news", 0, 10); return err },
		"Lookup": func() error { _, err := s.Lookup(ctx, "u/news", "n1"); return err },
		"Head":   func() error { _, _, err := s.Head(ctx, "u/news"); return err },
		"Evict": func() error {
			_, err := s.Evict(ctx, "u/news", store.Retention{MaxEvents: 1}, t0, 10)
			return err
		},
		"CreateDevice": func() error { return s.CreateDevice(ctx, device("dev2")) },
		"Device":       func() error { _, err := s.Device(ctx, "dev1"); return err },
		"UpdateDevice": func() error {
			_, err := s.UpdateDevice(ctx, "dev1", func(*store.Device) error { return nil })
			return err
		},
		"DeleteDevice": func() error { return s.DeleteDevice(ctx, "dev1") },
		"Devices":      func() error { return s.Devices(ctx, "", func(store.Device) error { return nil }) },
		"SetCursor":    func() error { return s.SetCursor(ctx, "dev1", "news", 1) },
		"Cursor":       func() error { _, _, err := s.Cursor(ctx, "dev1", "news"); return err },
		"ClaimWake":    func() error { _, err := s.ClaimWake(ctx, "dev1", "news", t0, time.Second); return err },
		"ClearWake":    func() error { return s.ClearWake(ctx, "dev1", "news") },
		"VAPIDKeys": func() error {
			_, err := s.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) { return store.VAPIDKeys{Public: "a", Private: "b"}, nil })
			return err
		},
		"Close": s.Close,
	}
	for name, call := range calls {
		wantErr(t, name+" after Close", call(), store.ErrClosed)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Append(ctx, "u/c", evs("c", 1), "c1")
	wantErr(t, "Append with a canceled context", err, context.Canceled)
	_, err = s.Read(ctx, "u/c", 0, 10)
	wantErr(t, "Read with a canceled context", err, context.Canceled)
	wantErr(t, "CreateDevice with a canceled context", s.CreateDevice(ctx, device("d")), context.Canceled)
	wantPositions(t, "nothing appended", readAll(t, s, "u/c"), nil)
}
