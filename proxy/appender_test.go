package proxy_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/wakeline/wakeline/store"
)

// A busy origin: events that arrive while a commit runs share the next one.
func TestBusyOriginIsStoredInBatches(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	const n = 2000
	want := make([]string, n)
	for i := range n {
		emit(e.origin, strconv.Itoa(i))
		want[i] = "e" + strconv.Itoa(i)
	}
	s.expect(want...)
	commits := metric(t, e, "wakeline_store_append_seconds_count")
	if commits <= 0 || commits >= n {
		t.Fatalf("%v appends for %d events: no batching", commits, n)
	}
	t.Logf("%d events in %v appends", n, commits)
}

// flaky fails every Append while down is set.
type flaky struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.New("test: store down")

func (f *flaky) Append(ctx context.Context, stream string, evs []store.Event, resume string) ([]store.Event, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.Append(ctx, stream, evs, resume)
}

// A store that cannot append: nothing is acknowledged to the origin, the
// events are fetched again once it can, and the device gets each once.
func TestStoreOutageLosesAndDoublesNothing(t *testing.T) {
	e := newEnv(t, nil)
	f := &flaky{}
	e.stop()
	e.wrap = func(s store.Store) store.Store { f.Store = s; return f }
	e.start()
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	emit(e.origin, "1", "2")
	s.expect("e1", "e2")

	f.down.Store(true)
	emit(e.origin, "3", "4", "5")
	// The gateway drops the connection and comes back from the last id it
	// stored, again and again while the store is down.
	for range 2 {
		if h := e.waitConnected(); h.Get("Last-Event-ID") != "2" {
			t.Fatalf("reconnected with Last-Event-ID %q, want 2", h.Get("Last-Event-ID"))
		}
	}
	f.down.Store(false)
	s.expect("e3", "e4", "e5")
	emit(e.origin, "6")
	s.expect("e6")
}
