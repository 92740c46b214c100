package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
	"golang.org/x/net/http/httpguts"
)

const (
	// maxSubscriptions bounds the upstreams one device may follow.
	maxSubscriptions = 64
	// maxIDLen bounds a resume id a client hands in.
	maxIDLen = 1024
)

// subPlan is a validated subscription and where its cursor starts.
type subPlan struct {
	sub         store.Subscription
	lastEventID *string
}

func (g *Gateway) checkPush(p *pushSubscriptionJSON) (store.PushSubscription, error) {
	if p == nil {
		return store.PushSubscription{}, badRequest("push_subscription", "required")
	}
	sub := p.toStore()
	if err := push.ValidateSubscription(sub, g.cfg.Push.AllowInsecureEndpoints); err != nil {
		var fe *push.FieldError
		if errors.As(err, &fe) {
			return sub, badRequest(fe.Field, "%s", fe.Msg)
		}
		return sub, badRequest("push_subscription", "%v", err)
	}
	return sub, nil
}

// checkSubs validates the subscriptions of a request for device id.
func (g *Gateway) checkSubs(id string, subs []subscriptionJSON) ([]subPlan, error) {
	if len(subs) == 0 {
		return nil, badRequest("subscriptions", "at least one upstream is required")
	}
	if len(subs) > maxSubscriptions {
		return nil, badRequest("subscriptions", "at most %d upstreams", maxSubscriptions)
	}
	plans := make([]subPlan, 0, len(subs))
	for i, s := range subs {
		field := fmt.Sprintf("subscriptions[%d]", i)
		u, ok := g.upstreams[s.Upstream]
		if !ok {
			return nil, badRequest(field+".upstream", "no upstream named %q", s.Upstream)
		}
		if slices.ContainsFunc(plans, func(p subPlan) bool { return p.sub.Upstream == s.Upstream }) {
			return nil, badRequest(field+".upstream", "upstream %q listed twice", s.Upstream)
		}
		if s.LastEventID != nil && !validID(*s.LastEventID) {
			return nil, badRequest(field+".last_event_id", "at most %d bytes, no NUL, CR or LF", maxIDLen)
		}
		hdr, err := checkHeaders(field+".headers", s.Headers, u.IsShared(), u.DeviceHeaders)
		if err != nil {
			return nil, err
		}
		plans = append(plans, subPlan{
			sub:         store.Subscription{Upstream: u.Name, Stream: streamFor(u, id), Headers: hdr},
			lastEventID: s.LastEventID,
		})
	}
	return plans, nil
}

func validID(id string) bool {
	return len(id) <= maxIDLen && !strings.ContainsAny(id, "\x00\r\n")
}

func checkHeaders(field string, h map[string]string, shared bool, allowed []string) (map[string]string, error) {
	if len(h) == 0 {
		return nil, nil
	}
	if shared {
		return nil, badRequest(field, "a shared upstream takes no device headers")
	}
	out := make(map[string]string, len(h))
	for name, v := range h {
		canon := headerName(name)
		if !slices.ContainsFunc(allowed, func(a string) bool { return headerName(a) == canon }) {
			return nil, badRequest(field+"."+name, "header not allowed for this upstream (device_headers)")
		}
		if !httpguts.ValidHeaderFieldValue(v) || len(v) > 8<<10 {
			return nil, badRequest(field+"."+name, "invalid header value")
		}
		out[canon] = v
	}
	return out, nil
}

// register creates a device: its cursors start now, or after the id it
// gives; a per-device origin connection starts from that id.
func (g *Gateway) register(ctx context.Context, req deviceRequest) (deviceState, error) {
	pushSub, err := g.checkPush(req.PushSubscription)
	if err != nil {
		return deviceState{}, err
	}
	id := newID()
	plans, err := g.checkSubs(id, req.Subscriptions)
	if err != nil {
		return deviceState{}, err
	}
	token := newToken(id)
	d := store.Device{
		ID: id, TokenHash: hashToken(token), Push: pushSub,
		PushState: store.PushState{Status: store.PushOK}, CreatedAt: time.Now().UTC(),
	}
	for _, p := range plans {
		d.Subscriptions = append(d.Subscriptions, p.sub)
	}
	if err := g.st.CreateDevice(ctx, d); err != nil {
		return deviceState{}, err
	}
	if err := g.startSubs(ctx, id, plans); err != nil {
		_ = g.st.DeleteDevice(context.WithoutCancel(ctx), id)
		return deviceState{}, err
	}
	g.mu.Lock()
	g.indexLocked(d)
	for _, p := range plans {
		g.ensureRunnerLocked(p.sub.Stream)
	}
	g.mu.Unlock()
	g.announce(Notice{Device: id})
	st, err := g.state(ctx, d)
	st.Token = token
	return st, err
}

// startSubs sets the cursor of each new subscription before the device is
// indexed, so that no event can fall between "now" and the first wake.
func (g *Gateway) startSubs(ctx context.Context, device string, plans []subPlan) error {
	for _, p := range plans {
		pos, err := g.startCursor(ctx, p)
		if err != nil {
			return err
		}
		if err := g.st.SetCursor(ctx, device, p.sub.Upstream, pos); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gateway) startCursor(ctx context.Context, p subPlan) (uint64, error) {
	_, last, err := g.st.Head(ctx, p.sub.Stream)
	if err != nil || p.lastEventID == nil || *p.lastEventID == "" {
		return last, err
	}
	pos, known, err := resolve(ctx, g.st, p.sub.Stream, *p.lastEventID)
	if err != nil || known {
		return pos, err
	}
	if g.upstreams[p.sub.Upstream].IsShared() {
		return last, nil // a shared origin cannot be rewound for one device
	}
	// A per-device origin is asked for what came after the device's id.
	_, err = g.st.Append(ctx, p.sub.Stream, nil, *p.lastEventID)
	return last, err
}

// patch replaces the push subscription and/or the subscriptions.
func (g *Gateway) patch(ctx context.Context, d store.Device, req deviceRequest) (store.Device, error) {
	if req.PushSubscription == nil && req.Subscriptions == nil {
		return d, badRequest("", "nothing to change: give push_subscription and/or subscriptions")
	}
	var pushSub *store.PushSubscription
	if req.PushSubscription != nil {
		s, err := g.checkPush(req.PushSubscription)
		if err != nil {
			return d, err
		}
		pushSub = &s
	}
	var plans []subPlan
	if req.Subscriptions != nil {
		var err error
		if plans, err = g.checkSubs(d.ID, req.Subscriptions); err != nil {
			return d, err
		}
		var fresh []subPlan
		for _, p := range plans {
			if _, ok := findSub(d, p.sub.Upstream); !ok {
				fresh = append(fresh, p)
			}
		}
		if err := g.startSubs(ctx, d.ID, fresh); err != nil {
			return d, err
		}
	}
	old := d.Subscriptions
	nd, err := g.st.UpdateDevice(ctx, d.ID, func(x *store.Device) error {
		if pushSub != nil {
			x.Push = *pushSub
			x.PushState = store.PushState{Status: store.PushOK}
		}
		if plans != nil {
			x.Subscriptions = x.Subscriptions[:0]
			for _, p := range plans {
				x.Subscriptions = append(x.Subscriptions, p.sub)
			}
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	if plans != nil {
		g.reindex(ctx, nd, old)
	}
	g.announce(Notice{Device: d.ID})
	return nd, nil
}
