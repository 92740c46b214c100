package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

// PlaceOpener opens the store at place (a file name, a key prefix: the
// backend decides), creating it when new; every call with the same place
// opens the same store. The suite closes what it opens; if the opener also
// closes on cleanup it must tolerate store.ErrClosed.
type PlaceOpener func(t *testing.T, place string) store.Store

// RunReopen checks that a store keeps everything across Close and open:
// logs, heads, devices, cursors, wakes, keys, and the position counters of
// deleted streams.
func RunReopen(t *testing.T, open PlaceOpener) {
	ctx := context.Background()
	const place = "reopen"
	mail := store.DeviceStreamPrefix("dev1") + "mail"
	keys := store.VAPIDKeys{Public: "pub", Private: "priv"}

	s := open(t, place)
	mustCreate(t, s, device("dev1"))
	mustCreate(t, s, device("dev2"))
	in := evs("n", 6)
	mustAppend(t, s, "u/news", in, "n6")
	mustAppend(t, s, mail, evs("m", 3), "m3")
	if _, err := s.Evict(ctx, "u/news", store.Retention{MaxEvents: 4}, t0, 10); err != nil {
		t.Fatal(err)
	}
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "news", 4))
	if _, err := s.ClaimWake(ctx, "dev1", "news", t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) { return keys, nil }); err != nil {
		t.Fatal(err)
	}
	must(t, "Close", s.Close())

	s = open(t, place)
	got := readAll(t, s, "u/news")
	wantPositions(t, "news after reopen", got, seq(3, 6))
	for _, e := range got {
		if !sameEvent(e, in[e.Pos-1]) {
			t.Fatalf("event %d after reopen: %+v, want %+v", e.Pos, e, in[e.Pos-1])
		}
	}
	if resume, last, err := s.Head(ctx, "u/news"); err != nil || resume != "n6" || last != 6 {
		t.Fatalf("Head after reopen = %q, %d, %v", resume, last, err)
	}
	if pos, err := s.Lookup(ctx, "u/news", "n5"); err != nil || pos != 5 {
		t.Fatalf("Lookup after reopen = %d, %v", pos, err)
	}
	d, err := s.Device(ctx, "dev1")
	must(t, "Device after reopen", err)
	wantDevice(t, "device after reopen", d, device("dev1"))
	wantCursor(t, s, "dev1", "news", 4, 2)
	// Wake claims need not outlive the process (store.Delivery): after a
	// reopen a claim either still stands or is free again, never an error.
	if _, err := s.ClaimWake(ctx, "dev1", "news", t0.Add(time.Minute), time.Hour); err != nil {
		t.Fatalf("ClaimWake after reopen: %v", err)
	}
	k, err := s.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) { return store.VAPIDKeys{Public: "x", Private: "y"}, nil })
	if err != nil || k != keys {
		t.Fatalf("VAPIDKeys after reopen = %+v, %v", k, err)
	}
	wantPositions(t, "append after reopen", mustAppend(t, s, "u/news", evs("o", 1), "o1"), []uint64{7})
	must(t, "DeleteDevice", s.DeleteDevice(ctx, "dev1"))
	must(t, "Close", s.Close())

	s = open(t, place)
	defer s.Close()
	if ids := deviceIDs(t, s, ""); len(ids) != 1 || ids[0] != "dev2" {
		t.Fatalf("devices after delete and reopen: %v", ids)
	}
	mustCreate(t, s, device("dev1"))
	wantPositions(t, "re-created stream after reopen", mustAppend(t, s, mail, evs("p", 1), "p1"), []uint64{4})
}
