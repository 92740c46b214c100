package storetest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

func testAppendPositions(t *testing.T, s store.Store) {
	in := evs("a", 3)
	out := mustAppend(t, s, "u/news", in, "a3")
	wantPositions(t, "first append", out, []uint64{1, 2, 3})
	for i := range in {
		if in[i].Pos != 0 {
			t.Fatalf("Append modified the caller's slice: event %d has Pos %d", i, in[i].Pos)
		}
		if !sameEvent(in[i], out[i]) {
			t.Fatalf("Append returned %+v for %+v", out[i], in[i])
		}
	}
	wantPositions(t, "second append", mustAppend(t, s, "u/news", evs("b", 2), "b2"), []uint64{4, 5})
	wantPositions(t, "other stream", mustAppend(t, s, "u/other", evs("c", 1), "c1"), []uint64{1})
	wantPositions(t, "read back", readAll(t, s, "u/news"), seq(1, 5))

	// A zero Received is set to the time of the append.
	before := time.Now()
	out = mustAppend(t, s, "u/news", []store.Event{{Type: "message", Data: "x"}}, "b2")
	after := time.Now()
	got := mustRead(t, s, "u/news", 5, 10).Events
	for _, e := range []store.Event{out[0], got[0]} {
		if e.Received.Before(before.Add(-time.Millisecond)) || e.Received.After(after.Add(time.Millisecond)) {
			t.Fatalf("zero Received became %v, want between %v and %v", e.Received, before, after)
		}
	}
}

func testAppendRoundTrip(t *testing.T, s store.Store) {
	long := strings.Repeat("x", 3000)
	in := []store.Event{
		{ID: "1", HasID: true, Type: "message", Data: "one", Received: t0},
		{Type: "update", Data: "no id\nsecond line", Received: t0.Add(time.Nanosecond)},
		{ID: "", HasID: true, Type: "message", Data: "", Received: t0.Add(time.Second)},
		{ID: "ünïcode id ✓", HasID: true, Type: "tÿpe", Data: "données ✓\n\n", Received: t0.Add(time.Hour)},
		{ID: long, HasID: true, Type: "message", Data: strings.Repeat("d", 70000), Received: t0.Local()},
		{ID: "stray", HasID: false, Type: "message", Data: "an id without HasID", Received: t0},
	}
	mustAppend(t, s, "u/rt", in, long)
	got := readAll(t, s, "u/rt")
	if len(got) != len(in) {
		t.Fatalf("read %d events, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i].Pos != uint64(i+1) || !sameEvent(got[i], in[i]) {
			t.Fatalf("event %d: got %+v, want %+v", i+1, got[i], in[i])
		}
	}
	resume, last, err := s.Head(context.Background(), "u/rt")
	must(t, "Head", err)
	if resume != long || last != uint64(len(in)) {
		t.Fatalf("Head = %.20q, %d; want the long id, %d", resume, last, len(in))
	}
}

func testAppendInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"", "a\x00b", strings.Repeat("s", store.MaxNameLen+1)} {
		_, err := s.Append(ctx, name, evs("a", 1), "")
		wantErr(t, "Append to a bad stream name", err, store.ErrInvalid)
		_, err = s.Read(ctx, name, 0, 10)
		wantErr(t, "Read of a bad stream name", err, store.ErrInvalid)
	}
	mustAppend(t, s, "u/a", evs("a", 2), "a2")
	for _, limit := range []int{0, -1} {
		_, err := s.Read(ctx, "u/a", 0, limit)
		wantErr(t, "Read with limit < 1", err, store.ErrInvalid)
	}
	_, err := s.Evict(ctx, "u/a", store.Retention{MaxEvents: 1}, t0, 0)
	wantErr(t, "Evict with batch 0", err, store.ErrInvalid)
	wantPositions(t, "after invalid calls", readAll(t, s, "u/a"), []uint64{1, 2})
}

func testReadPages(t *testing.T, s store.Store) {
	in := evs("p", 10)
	mustAppend(t, s, "u/p", in[:4], "p4")
	mustAppend(t, s, "u/p", in[4:], "p10")
	var after uint64
	for _, want := range [][]uint64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10}, {}} {
		p := mustRead(t, s, "u/p", after, 3)
		wantPage(t, "page", p, false, 1, 10, want)
		for _, e := range p.Events {
			if !sameEvent(e, in[e.Pos-1]) {
				t.Fatalf("event %d: got %+v, want %+v", e.Pos, e, in[e.Pos-1])
			}
		}
		if len(want) > 0 {
			after = want[len(want)-1]
		}
	}
	wantPage(t, "limit larger than the log", mustRead(t, s, "u/p", 8, 1000), false, 1, 10, []uint64{9, 10})
}

func testReadGap(t *testing.T, s store.Store) {
	mustAppend(t, s, "u/g", evs("g", 10), "g10")
	n, err := s.Evict(context.Background(), "u/g", store.Retention{MaxEvents: 6}, t0, 100)
	must(t, "Evict", err)
	if n != 4 {
		t.Fatalf("Evict removed %d, want 4", n)
	}
	for _, c := range []struct {
		after uint64
		gap   bool
		want  []uint64
	}{
		{0, false, []uint64{5, 6, 7}},  // from the oldest, never a gap
		{2, true, []uint64{5, 6, 7}},   // 3 and 4 were evicted
		{3, true, []uint64{5, 6, 7}},   // 4 was evicted
		{4, false, []uint64{5, 6, 7}},  // nothing after 4 is missing
		{7, false, []uint64{8, 9, 10}}, // plain resume
		{10, false, nil},               // up to date
		{11, true, []uint64{5, 6, 7}},  // beyond anything assigned
		{1 << 40, true, []uint64{5, 6, 7}},
	} {
		p := mustRead(t, s, "u/g", c.after, 3)
		wantPage(t, "read after "+strconv.FormatUint(c.after, 10), p, c.gap, 5, 10, c.want)
	}
}

func testReadEmptyStream(t *testing.T, s store.Store) {
	wantPage(t, "never appended, after 0", mustRead(t, s, "u/none", 0, 10), false, 0, 0, nil)
	wantPage(t, "never appended, after 5", mustRead(t, s, "u/none", 5, 10), true, 0, 0, nil)
	resume, last, err := s.Head(context.Background(), "u/none")
	must(t, "Head", err)
	if resume != "" || last != 0 {
		t.Fatalf("Head of a new stream = %q, %d", resume, last)
	}
	n, err := s.Evict(context.Background(), "u/none", store.Retention{MaxEvents: 1}, t0, 10)
	if err != nil || n != 0 {
		t.Fatalf("Evict of a new stream = %d, %v", n, err)
	}
}

func testLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	long1 := strings.Repeat("L", 2000) + "1"
	long2 := strings.Repeat("L", 2000) + "2"
	mustAppend(t, s, "u/l", []store.Event{
		ev("a", "1"), ev("b", "2"), ev("a", "3"),
		{Type: "message", Data: "no id"},
		{ID: "", HasID: true, Data: "empty id"},
		ev(long1, "6"), ev(long2, "7"),
		{ID: "c", HasID: false, Data: "not an id"},
	}, "")
	mustAppend(t, s, "u/other", []store.Event{ev("z", "1")}, "z")
	for id, want := range map[string]uint64{"a": 3, "b": 2, "": 5, long1: 6, long2: 7} {
		pos, err := s.Lookup(ctx, "u/l", id)
		if err != nil || pos != want {
			t.Fatalf("Lookup(%.10q) = %d, %v; want %d", id, pos, err, want)
		}
	}
	for _, id := range []string{"c", "z", "missing", strings.Repeat("L", 2000) + "3"} {
		_, err := s.Lookup(ctx, "u/l", id)
		wantErr(t, "Lookup of "+id[:1], err, store.ErrNotFound)
	}
	_, err := s.Lookup(ctx, "u/never", "a")
	wantErr(t, "Lookup in a new stream", err, store.ErrNotFound)
}

func testLookupAfterEvict(t *testing.T, s store.Store) {
	ctx := context.Background()
	// x at 1 and 4, y at 2, z at 3.
	mustAppend(t, s, "u/le", []store.Event{ev("x", "1"), ev("y", "2"), ev("z", "3"), ev("x", "4")}, "x")
	n, err := s.Evict(ctx, "u/le", store.Retention{MaxEvents: 2}, t0, 10)
	if err != nil || n != 2 {
		t.Fatalf("Evict = %d, %v; want 2", n, err)
	}
	_, err = s.Lookup(ctx, "u/le", "y")
	wantErr(t, "Lookup of an evicted id", err, store.ErrNotFound)
	if pos, err := s.Lookup(ctx, "u/le", "x"); err != nil || pos != 4 {
		t.Fatalf("Lookup(x) = %d, %v; want the kept 4", pos, err)
	}
	mustAppend(t, s, "u/le", []store.Event{ev("y", "5")}, "y")
	if pos, err := s.Lookup(ctx, "u/le", "y"); err != nil || pos != 5 {
		t.Fatalf("Lookup(y) after re-append = %d, %v; want 5", pos, err)
	}
}

func testHeadResumeID(t *testing.T, s store.Store) {
	ctx := context.Background()
	head := func(wantResume string, wantLast uint64) {
		t.Helper()
		resume, last, err := s.Head(ctx, "u/h")
		must(t, "Head", err)
		if resume != wantResume || last != wantLast {
			t.Fatalf("Head = %q, %d; want %q, %d", resume, last, wantResume, wantLast)
		}
	}
	mustAppend(t, s, "u/h", evs("h", 3), "h3")
	head("h3", 3)
	// An empty batch only moves the resume id (an origin's id-only event).
	if out := mustAppend(t, s, "u/h", nil, "h3b"); len(out) != 0 {
		t.Fatalf("empty Append returned %d events", len(out))
	}
	head("h3b", 3)
	mustAppend(t, s, "u/h", []store.Event{{Type: "message", Data: "no id"}}, "")
	head("", 4)
	mustAppend(t, s, "u/fresh", nil, "r")
	resume, last, err := s.Head(ctx, "u/fresh")
	if err != nil || resume != "r" || last != 0 {
		t.Fatalf("Head after an empty first append = %q, %d, %v", resume, last, err)
	}
	wantPositions(t, "after an empty first append", mustAppend(t, s, "u/fresh", evs("f", 1), "f1"), []uint64{1})
}

func testEvictMaxEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustAppend(t, s, "u/e", evs("e", 10), "e10")
	r := store.Retention{MaxEvents: 4}
	for _, want := range []int{3, 3, 0} {
		n, err := s.Evict(ctx, "u/e", r, t0, 3)
		if err != nil || n != want {
			t.Fatalf("Evict = %d, %v; want %d", n, err, want)
		}
	}
	wantPositions(t, "kept", readAll(t, s, "u/e"), seq(7, 10))
	wantPositions(t, "append after evict", mustAppend(t, s, "u/e", evs("f", 2), "f2"), []uint64{11, 12})
	n, err := s.Evict(ctx, "u/e", store.Retention{}, t0, 100)
	if err != nil || n != 0 {
		t.Fatalf("Evict without bounds = %d, %v; want 0", n, err)
	}
	wantPage(t, "after", mustRead(t, s, "u/e", 0, 100), false, 7, 12, seq(7, 12))
}

func testEvictMaxAge(t *testing.T, s store.Store) {
	ctx := context.Background()
	in := evs("m", 8) // received t0, t0+1s, ... t0+7s
	// An event received earlier than one before it stays until that one goes.
	in[6].Received = t0
	mustAppend(t, s, "u/m", in, "m8")
	r := store.Retention{MaxAge: 5 * time.Second}
	now := t0.Add(10 * time.Second) // everything before t0+5s is too old
	n, err := s.Evict(ctx, "u/m", r, now, 100)
	if err != nil || n != 5 {
		t.Fatalf("Evict by age = %d, %v; want 5 (t0..t0+4s)", n, err)
	}
	// Exactly MaxAge old is kept.
	n, err = s.Evict(ctx, "u/m", r, t0.Add(10*time.Second), 100)
	if err != nil || n != 0 {
		t.Fatalf("second Evict = %d, %v; want 0", n, err)
	}
	n, err = s.Evict(ctx, "u/m", r, t0.Add(11*time.Second+1), 100)
	if err != nil || n != 2 {
		t.Fatalf("Evict a second later = %d, %v; want 2 (t0+5s, and t0 behind it)", n, err)
	}
	wantPositions(t, "kept", readAll(t, s, "u/m"), []uint64{8})
	// Both bounds: the count evicts what age would keep.
	n, err = s.Evict(ctx, "u/m", store.Retention{MaxEvents: 5, MaxAge: time.Hour}, now, 100)
	if err != nil || n != 0 {
		t.Fatalf("Evict within both bounds = %d, %v", n, err)
	}
}

func testEvictAll(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustAppend(t, s, "u/all", evs("a", 5), "a5")
	n, err := s.Evict(ctx, "u/all", store.Retention{MaxAge: time.Second}, t0.Add(time.Hour), 100)
	if err != nil || n != 5 {
		t.Fatalf("Evict = %d, %v; want 5", n, err)
	}
	wantPage(t, "after 0", mustRead(t, s, "u/all", 0, 10), false, 0, 5, nil)
	wantPage(t, "after 3", mustRead(t, s, "u/all", 3, 10), true, 0, 5, nil)
	wantPage(t, "after 5", mustRead(t, s, "u/all", 5, 10), false, 0, 5, nil)
	resume, last, err := s.Head(ctx, "u/all")
	if err != nil || resume != "a5" || last != 5 {
		t.Fatalf("Head after evicting all = %q, %d, %v", resume, last, err)
	}
	wantPositions(t, "append after", mustAppend(t, s, "u/all", evs("b", 1), "b1"), []uint64{6})
	wantPage(t, "after 3 again", mustRead(t, s, "u/all", 3, 10), true, 6, 6, []uint64{6})
}
