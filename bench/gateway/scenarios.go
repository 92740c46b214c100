package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// benchWake: n sleeping devices on one shared upstream, rate events/s.
// rewake_after is 1s so that every device is woken again each second, a
// steady load of about n wakes/s on top of the first burst of n. Latency
// is the gateway's own: event received → push service answered.
func benchWake(ctx context.Context, n, rate, seconds int) error {
	var lat samples
	var failed atomic.Int64
	r, err := newRig(ctx, func(c *config.Config) { c.Push.RewakeAfter = time.Second },
		func(_, _ string, received, answered time.Time, err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			lat.add(answered.Sub(received))
		})
	if err != nil {
		return err
	}
	defer r.stop()
	if _, err := r.register(ctx, n); err != nil {
		return err
	}
	if err := r.waitOrigin(ctx); err != nil {
		return err
	}
	go drain(ctx, r)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range rate * seconds {
		<-tick.C
		r.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: `{"n":` + strconv.Itoa(i) + `}`})
	}
	time.Sleep(time.Second) // let the last wakes be answered
	fmt.Printf("wake: %d sleeping devices, %d events/s for %ds, %d wakes answered, %d failed\n", n, rate, seconds, len(lat.ds), failed.Load())
	quantiles("wake latency (event received -> push service answered)", lat.ds)
	return nil
}

// drain empties the push service's record so it never fills.
func drain(ctx context.Context, r *rig) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.push.Received():
		}
	}
}

// benchReplay: a device misses `missed` events, then reconnects; the time
// from its request to reading the last event.
func benchReplay(ctx context.Context, missed int) error {
	r, err := newRig(ctx, nil, nil)
	if err != nil {
		return err
	}
	defer r.stop()
	devs, err := r.register(ctx, 1)
	if err != nil {
		return err
	}
	d := devs[0]
	if err := r.waitOrigin(ctx); err != nil {
		return err
	}
	go drain(ctx, r)
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
	devs, err := r.register(ctx, n)
	if err != nil {
		return err
	}
	if err := r.waitOrigin(ctx); err != nil {
		return err
	}
	go drain(ctx, r)
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
