package storetest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

// BenchOpener returns a new, empty store for one benchmark and arranges for
// it to be closed when the benchmark ends.
type BenchOpener func(b *testing.B) store.Store

// Bench measures the figures the gateway depends on:
//
//   - Append: durable appends of 1 KiB events from 100 concurrent streams,
//     each calling Append again as soon as the last one returned, with 1, 3
//     and 10 events per call; reports events/s and the p99 latency of one
//     call (p99-ms).
//   - Offered: 1 KiB events arriving at 50,000 events/s spread over 100
//     streams, each stream's appender taking whatever arrived while its
//     last Append ran (as the gateway appends); reports the events/s
//     achieved, the p99 time from an event's arrival to its durable commit
//     (p99-ms), and the mean events per Append call.
//   - Replay: reading a 100,000-event log of 1 KiB events after a cursor in
//     pages of 256; reports events/s.
//   - Pending: Cursor on logs of 1,000 and 100,000 events; ns/op must not
//     grow with the log.
//   - Lookup: the position of an origin id 10 and 10,000 events back in a
//     10,000-event log of 1 KiB events (a device resuming from a recent id,
//     and from the oldest one kept at the default retention).
func Bench(b *testing.B, open BenchOpener) {
	for _, batch := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("Append/streams=100/batch=%d", batch), func(b *testing.B) {
			benchAppend(b, open(b), 100, batch)
		})
	}
	b.Run("Offered/streams=100/rate=50000", func(b *testing.B) {
		benchOffered(b, open(b), 100, 50_000)
	})
	b.Run("Replay", func(b *testing.B) { benchReplay(b, open(b), 100_000, 256) })
	b.Run("Pending", func(b *testing.B) {
		for _, n := range []int{1_000, 100_000} {
			benchPending(b, open(b), n)
		}
	})
	b.Run("Lookup", func(b *testing.B) { benchLookup(b, open(b), 10_000, []int{10, 10_000}) })
}

var kib = strings.Repeat("x", 1024)

func benchEvents(prefix string, from, n int, data string) []store.Event {
	out := make([]store.Event, n)
	for i := range out {
		out[i] = store.Event{ID: prefix + strconv.Itoa(from+i), HasID: true, Type: "message", Data: data}
	}
	return out
}

// benchAppend counts b.N as events: each of streams goroutines appends
// b.N/streams events to its own stream, batch per call.
func benchAppend(b *testing.B, s store.Store, streams, batch int) {
	ctx := context.Background()
	calls := max(1, b.N/(streams*batch))
	lat := make([][]time.Duration, streams)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for k := range streams {
		wg.Go(func() {
			stream := fmt.Sprintf("u/bench%d", k)
			lat[k] = make([]time.Duration, 0, calls)
			for i := range calls {
				events := benchEvents("e", i*batch, batch, kib)
				t := time.Now()
				if _, err := s.Append(ctx, stream, events, events[batch-1].ID); err != nil {
					b.Error(err)
					return
				}
				lat[k] = append(lat[k], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	p99 := all[len(all)*99/100]
	b.ReportMetric(float64(streams*calls*batch)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p99)/float64(time.Millisecond), "p99-ms")
}

// fill appends n events of data to stream in batches of 1000.
func fill(b *testing.B, s store.Store, stream string, n int, data string) {
	for i := 0; i < n; i += 1000 {
		events := benchEvents("f", i, min(1000, n-i), data)
		if _, err := s.Append(context.Background(), stream, events, events[len(events)-1].ID); err != nil {
			b.Fatal(err)
		}
	}
}

// benchReplay reads the log from the start in pages, over and over, until
// b.N events were read.
func benchReplay(b *testing.B, s store.Store, n, page int) {
	fill(b, s, "u/replay", n, kib)
	b.Run(fmt.Sprintf("events=%d/page=%d", n, page), func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		var after uint64
		for read := 0; read < b.N; {
			p, err := s.Read(ctx, "u/replay", after, min(page, b.N-read))
			if err != nil {
				b.Fatal(err)
			}
			read += len(p.Events)
			after = 0
			if m := len(p.Events); m > 0 && p.Events[m-1].Pos < p.Last {
				after = p.Events[m-1].Pos
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// benchPending times Cursor of a device halfway through an n-event log.
func benchPending(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	d := store.Device{ID: "bench", Subscriptions: []store.Subscription{{Upstream: "news", Stream: "u/pending"}}}
	if err := s.CreateDevice(ctx, d); err != nil {
		b.Fatal(err)
	}
	fill(b, s, "u/pending", n, "small event data")
	if err := s.SetCursor(ctx, "bench", "news", uint64(n/2)); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("log=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, pending, err := s.Cursor(ctx, "bench", "news")
			if err != nil || pending != int64(n-n/2) {
				b.Fatalf("Cursor: pending %d, %v; want %d", pending, err, n-n/2)
			}
		}
	})
}

// benchLookup times Lookup of ids back events before the newest.
func benchLookup(b *testing.B, s store.Store, n int, backs []int) {
	fill(b, s, "u/lookup", n, kib)
	for _, back := range backs {
		b.Run(fmt.Sprintf("log=%d/back=%d", n, back), func(b *testing.B) {
			id := "f" + strconv.Itoa(n-back)
			want := uint64(n - back + 1)
			b.ReportAllocs()
			for b.Loop() {
				pos, err := s.Lookup(context.Background(), "u/lookup", id)
				if err != nil || pos != want {
					b.Fatalf("Lookup(%s) = %d, %v; want %d", id, pos, err, want)
				}
			}
		})
	}
}

// offered is an event and when it arrived.
type offered struct {
	at time.Time
	ev store.Event
}

// benchOffered offers b.N events at rate events/s spread evenly over
// streams; one appender per stream appends whatever is waiting, up to 256
// events per call. An event's latency runs from its arrival to the return
// of the Append that stored it.
func benchOffered(b *testing.B, s store.Store, streams, rate int) {
	queues := make([]chan offered, streams)
	lat := make([][]time.Duration, streams)
	calls := make([]int, streams)
	var wg sync.WaitGroup
	for k := range streams {
		queues[k] = make(chan offered, 4*rate/streams+256) // four seconds of backlog
		wg.Go(func() {
			lat[k], calls[k] = appendOffered(b, s, fmt.Sprintf("u/offered%d", k), queues[k])
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if dropped := offer(b.N, rate, queues); dropped > 0 {
		b.Errorf("%d of %d events found their queue full", dropped, b.N)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Sorted(slices.Values(slices.Concat(lat...)))
	if len(all) == 0 {
		return
	}
	total := 0
	for _, c := range calls {
		total += c
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(all[len(all)*99/100])/float64(time.Millisecond), "p99-ms")
	b.ReportMetric(float64(len(all))/float64(total), "events/call")
}

// offer sends n events at rate events/s round-robin into queues, every
// millisecond what is due, then closes them. It returns how many events
// found their queue full.
func offer(n, rate int, queues []chan offered) (dropped int) {
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	start := time.Now()
	for sent := 0; sent < n; {
		now := <-ticker.C
		// Catch up on the schedule, not on the ticks: a late tick sends more.
		due := min(n, int(now.Sub(start).Seconds()*float64(rate)))
		for ; sent < due; sent++ {
			a := offered{at: now, ev: store.Event{ID: strconv.Itoa(sent), HasID: true, Type: "message", Data: kib}}
			select {
			case queues[sent%len(queues)] <- a:
			default:
				dropped++ // the store fell four seconds behind
			}
		}
	}
	for _, q := range queues {
		close(q)
	}
	return dropped
}

// appendOffered appends what arrives on q to stream, each call taking all
// that waits, and returns each event's latency and the number of calls.
func appendOffered(b *testing.B, s store.Store, stream string, q <-chan offered) ([]time.Duration, int) {
	var lat []time.Duration
	calls := 0
	for first := range q {
		batch := []offered{first}
	drain:
		for len(batch) < 256 {
			select {
			case a, ok := <-q:
				if !ok {
					break drain
				}
				batch = append(batch, a)
			default:
				break drain
			}
		}
		events := make([]store.Event, len(batch))
		for i, a := range batch {
			events[i] = a.ev
		}
		if _, err := s.Append(context.Background(), stream, events, events[len(events)-1].ID); err != nil {
			b.Error(err)
			return lat, calls
		}
		done := time.Now()
		for _, a := range batch {
			lat = append(lat, done.Sub(a.at))
		}
		calls++
	}
	return lat, calls
}
