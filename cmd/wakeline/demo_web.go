package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// demoTick is how often the served demo's origin publishes an event.
const demoTick = 2 * time.Second

// demoPageURL is the example page, told to register with a subscription of
// the demo's push service (no browser push service is reachable here).
func demoPageURL(base string, sub any) string {
	raw, _ := json.Marshal(sub)
	q := url.Values{"token": {demoToken}, "upstream": {"news"}, "subscription": {string(raw)}}
	return base + "/demo/?" + q.Encode()
}

// keepServing runs the demo on until ctx ends: the origin publishes every
// demoTick, and every wake the push service gets is told.
func keepServing(ctx context.Context, p *printer, base string, origin *upstreamtest.Origin, pushSvc *pushtest.Server) error {
	sub, err := pushSvc.NewSubscription()
	if err != nil {
		return err
	}
	p.say("Serving on. Open the example page in a browser (Ctrl-C to stop):")
	fmt.Fprintln(p.out, "    "+demoPageURL(base, sub))
	tick := time.NewTicker(demoTick)
	defer tick.Stop()
	for n := 100; ; n++ {
		select {
		case <-ctx.Done():
			p.say("Stopping.")
			return nil
		case <-tick.C:
			origin.Emit(upstreamtest.Event{ID: strconv.Itoa(n), Data: fmt.Sprintf("tick %d at %s", n, time.Now().Format(time.TimeOnly))})
		case d := <-pushSvc.Received():
			p.say("wake message for device %s: %s", d.Msg.Device, d.Payload)
		}
	}
}
