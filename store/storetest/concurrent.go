package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/wakeline/wakeline/store"
)

// sentEvent is an event as Append returned it, and where it went.
type sentEvent struct {
	stream string
	ev     store.Event
}

// testConcurrentAppends has writers share one stream and own others: every
// position is handed out once, in order, with the data its writer sent, and
// the resume id belongs to the newest event.
func testConcurrentAppends(t *testing.T, s store.Store) {
	const writers, appends = 8, 25
	results := make([][]sentEvent, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() { results[w] = appendConcurrently(t, s, w, appends) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	byStream := map[string]map[uint64]store.Event{}
	for _, r := range slices.Concat(results...) {
		m := byStream[r.stream]
		if m == nil {
			m = map[uint64]store.Event{}
			byStream[r.stream] = m
		}
		if _, dup := m[r.ev.Pos]; dup {
			t.Fatalf("%s: position %d handed out twice", r.stream, r.ev.Pos)
		}
		m[r.ev.Pos] = r.ev
	}
	for stream, m := range byStream {
		got := readAll(t, s, stream)
		wantPositions(t, stream, got, seq(1, uint64(len(m))))
		for _, e := range got {
			if !sameEvent(e, m[e.Pos]) {
				t.Fatalf("%s %d: stored %+v, appended %+v", stream, e.Pos, e, m[e.Pos])
			}
		}
		resume, last, err := s.Head(context.Background(), stream)
		must(t, "Head", err)
		if last != uint64(len(m)) || resume != m[last].ID {
			t.Fatalf("%s: Head = %q, %d; want %q, %d", stream, resume, last, m[last].ID, len(m))
		}
	}
}

// appendConcurrently is writer w of testConcurrentAppends: batches of 1 to
// 3 events, to "u/shared" and to a stream of its own.
func appendConcurrently(t *testing.T, s store.Store, w, appends int) []sentEvent {
	var sent []sentEvent
	var last uint64
	for i := range appends {
		stream := "u/shared"
		if i%3 == 2 {
			stream = fmt.Sprintf("u/own%d", w)
		}
		batch := evs(fmt.Sprintf("w%d-%d-", w, i), 1+i%3)
		out, err := s.Append(context.Background(), stream, batch, batch[len(batch)-1].ID)
		if err != nil {
			t.Error(err)
			return sent
		}
		for j, e := range out {
			if j > 0 && e.Pos != out[j-1].Pos+1 {
				t.Errorf("batch positions not contiguous: %v", positions(out))
			}
			if stream == "u/shared" {
				if e.Pos <= last {
					t.Errorf("writer %d: position %d after %d", w, e.Pos, last)
				}
				last = e.Pos
			}
			sent = append(sent, sentEvent{stream, e})
		}
	}
	return sent
}

// testConcurrentMixed runs appends, paged readers with lookups, an evictor
// and cursor moves on one stream at once; every observation must be
// coherent.
func testConcurrentMixed(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	const stream, keep, total = "u/news", 40, 300
	r := store.Retention{MaxEvents: keep}
	done := make(chan struct{})
	var writers, others sync.WaitGroup
	for w := range 3 {
		writers.Go(func() {
			for i := range total / 3 / 2 {
				batch := evs(fmt.Sprintf("w%d-%d-", w, i), 2)
				if _, err := s.Append(ctx, stream, batch, batch[1].ID); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	others.Go(func() { follow(t, s, stream, done) })
	others.Go(func() {
		for !isDone(done) {
			if _, err := s.Evict(ctx, stream, r, t0, 7); err != nil {
				t.Error(err)
			}
		}
	})
	var cur uint64 // the cursor, owned by its goroutine until others.Wait
	others.Go(func() { cur = chaseCursor(t, s, stream, done) })
	writers.Wait()
	close(done)
	others.Wait()
	for {
		n, err := s.Evict(ctx, stream, r, t0, 7)
		must(t, "Evict", err)
		if n == 0 {
			break
		}
	}
	wantPositions(t, "kept after the storm", readAll(t, s, stream), seq(total-keep+1, total))
	wantCursor(t, s, "dev1", "news", cur, int64(min(total-cur, keep)))
}

func isDone(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// chaseCursor moves dev1's cursor for news to the stream's last position
// until done, checking Cursor after each move; it returns the cursor.
func chaseCursor(t *testing.T, s store.Store, stream string, done <-chan struct{}) uint64 {
	ctx := context.Background()
	var cur uint64
	for !isDone(done) {
		_, last, err := s.Head(ctx, stream)
		if err == nil && last > cur {
			cur = last
			err = s.SetCursor(ctx, "dev1", "news", cur)
		}
		var pos uint64
		var pending int64
		if err == nil {
			pos, pending, err = s.Cursor(ctx, "dev1", "news")
		}
		if err != nil || pos != cur || pending < 0 {
			t.Errorf("Cursor = %d, %d, %v; set to %d", pos, pending, err, cur)
			break
		}
	}
	return cur
}

// follow reads stream like a device would, until done: pages are
// contiguous and a gap only ever skips evicted events.
func follow(t *testing.T, s store.Store, stream string, done <-chan struct{}) {
	var after uint64
	for {
		p, err := s.Read(context.Background(), stream, after, 16)
		if err != nil {
			t.Error(err)
			return
		}
		for i, e := range p.Events {
			want := after + 1
			if i > 0 {
				want = p.Events[i-1].Pos + 1
			} else if after == 0 {
				want = e.Pos // "from the oldest kept": eviction may have run first
			} else if p.Gap {
				want = e.Pos // a gap may skip, but only forward
				if e.Pos <= after+1 {
					t.Errorf("gap after %d but the page starts at %d", after, e.Pos)
				}
			}
			if e.Pos != want {
				t.Errorf("after %d: page %v is not contiguous", after, positions(p.Events))
				return
			}
		}
		if n := len(p.Events); n > 0 {
			e := p.Events[n-1]
			after = e.Pos
			// Ids are unique here: found at its position, or evicted since.
			pos, err := s.Lookup(context.Background(), stream, e.ID)
			if err == nil && pos != e.Pos || err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Lookup(%s) = %d, %v; want %d or not found", e.ID, pos, err, e.Pos)
			}
			continue
		}
		if isDone(done) {
			return
		}
	}
}
