package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// benchWake: n sleeping devices on one shared upstream, rate events/s.
// Latency is the gateway's own: event received -> push service answered.
//
// Burst: the first event finds all n asleep and wakes each once; the last
// is answered when the sender has encrypted and signed n messages.
// Steady: then, with every event, one device wakes up, reads what it
// missed and sleeps again, so that the next event wakes it anew: a steady
// `rate` wakes a second, one at a time, as devices that wake at random.
func benchWake(ctx context.Context, n, rate, seconds int) error {
	var mu sync.Mutex
	var burst, steady []time.Duration
	inBurst := true
	var failed atomic.Int64
	r, err := newRig(ctx, nil, func(_, _ string, received, answered time.Time, err error) {
		if err != nil {
			failed.Add(1)
			return
		}
		mu.Lock()
		if inBurst {
			burst = append(burst, answered.Sub(received))
		} else {
			steady = append(steady, answered.Sub(received))
		}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer r.stop()
	devs, err := r.ready(ctx, n)
	if err != nil {
		return err
	}
	r.origin.Emit(upstreamtest.Event{ID: "0", Data: `{"n":0}`})
	for mu.Lock(); len(burst) < n; mu.Lock() { // every device woken once
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	inBurst = false
	mu.Unlock()

	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 1; i <= rate*seconds; i++ {
		<-tick.C
		r.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: `{"n":` + strconv.Itoa(i) + `}`})
		if err := cycle(ctx, r, devs[i%len(devs)], strconv.Itoa(i)); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // let the last wakes be answered
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("wake: %d sleeping devices, %d events/s for %ds, %d failed\n", n, rate, seconds, failed.Load())
	quantiles("burst: first event wakes all (event received -> push service answered)", burst)
	quantiles(fmt.Sprintf("steady: ~%d wakes/s (event received -> push service answered)", rate), steady)
	return nil
}

// cycle opens and closes a device's stream, as a device that wakes, reads
// up to last and sleeps again.
func cycle(ctx context.Context, r *rig, d dev, last string) error {
	resp, _, err := r.open(ctx, d, last)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// benchReplay: a device misses `missed` events, then reconnects; the time
// from its request to reading the last event.
func benchReplay(ctx context.Context, missed int) error {
	r, err := newRig(ctx, nil, nil)
	if err != nil {
		return err
	}
	defer r.stop()
	devs, err := r.ready(ctx, 1)
	if err != nil {
		return err
	}
	d := devs[0]
	data := `{"headline":"` + strings.Repeat("x", 200) + `"}`
	for i := 0; i <= missed; i++ {
		r.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: data})
	}
	// A second device reading live tells us when all are stored.
	watch, err := r.register(ctx, 1)
	if err != nil {
		return err
	}
	resp, dec, err := r.open(ctx, watch[0], "0")
	if err != nil {
		return err
	}
	for range missed {
		if _, err := dec.Next(); err != nil {
			return err
		}
	}
	resp.Body.Close()
	for range 3 {
		start := time.Now()
		resp, dec, err := r.open(ctx, d, "0")
		if err != nil {
			return err
		}
		for range missed {
			if _, err := dec.Next(); err != nil {
				return err
			}
		}
		took := time.Since(start)
		resp.Body.Close()
		fmt.Printf("replay: %d missed events read in %v (%.0f events/s)\n", missed, took.Round(time.Millisecond), float64(missed)/took.Seconds())
	}
	return nil
}

// benchFanout: n devices with a live stream each; the origin stamps each
// event with its send time; latency is send → read by each device.
func benchFanout(ctx context.Context, n, rate, seconds int) error {
	r, err := newRig(ctx, nil, nil)
	if err != nil {
		return err
	}
	defer r.stop()
	devs, err := r.ready(ctx, n)
	if err != nil {
		return err
	}
	events := rate * seconds
	var lat samples
	g, gctx := errgroup.WithContext(ctx)
	var opened atomic.Int64
	ready := make(chan struct{})
	for _, d := range devs {
		g.Go(func() error {
			s, err := r.openLean(gctx, d)
			if err != nil {
				return err
			}
			defer s.Close()
			if opened.Add(1) == int64(n) {
				close(ready)
			}
			for range events {
				sent, err := s.nextStamp()
				if err != nil {
					return err
				}
				lat.add(time.Since(sent))
			}
			return nil
		})
	}
	<-ready
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := range events {
		<-tick.C
		r.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: strconv.FormatInt(time.Now().UnixNano(), 10)})
	}
	tick.Stop()
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("fanout: %d live devices, %d events at %d/s, %d deliveries\n", n, events, rate, len(lat.ds))
	quantiles("delivery latency (origin sent -> device read)", lat.ds)
	return nil
}
