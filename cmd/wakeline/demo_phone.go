package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// demoPhone is the simulated device: it speaks to the gateway over HTTP
// exactly as the browser client does.
type demoPhone struct {
	base   string
	p      *printer
	id     string
	token  string
	lastID string
}

func (ph *demoPhone) story(ctx context.Context, origin *upstreamtest.Origin, pushSvc *pushtest.Server) error {
	sub, err := pushSvc.NewSubscription()
	if err != nil {
		return err
	}
	if err := ph.register(ctx, sub); err != nil {
		return err
	}
	select { // the gateway holds the origin connection from now on
	case <-origin.Connected():
	case <-ctx.Done():
		return fmt.Errorf("%w: the gateway never connected to the origin", errDemo)
	}
	ph.p.say("The gateway connected to the origin on the phone's behalf")

	s, err := ph.open(ctx)
	if err != nil {
		return err
	}
	ph.p.say("The phone is awake and opens its event stream through the gateway")
	origin.Emit(upstreamtest.Event{ID: "1", Data: "Good morning"})
	if err := ph.read(s, 1, "live"); err != nil {
		return err
	}
	s.Close()
	if err := ph.sleep(ctx); err != nil {
		return err
	}
	ph.p.say("The screen turns off: the phone hands its stream to the gateway (last id %q) and sleeps", ph.lastID)

	for i, head := range []string{"Markets open", "Rain at noon", "Match postponed"} {
		origin.Emit(upstreamtest.Event{ID: fmt.Sprint(i + 2), Data: head})
	}
	ph.p.say("The origin publishes three events while the phone sleeps; the gateway stores each one")

	var wake pushtest.Delivery
	select {
	case wake = <-pushSvc.Received():
	case <-ctx.Done():
		return fmt.Errorf("%w: no wake message arrived", errDemo)
	}
	if wake.Err != nil {
		return fmt.Errorf("%w: the push service refused the wake: %v", errDemo, wake.Err)
	}
	ph.p.say("The push service got ONE wake message (aes128gcm, %d bytes, VAPID sub %s, Topic %s)", wake.BodyLen, wake.Subject, wake.Header.Get("Topic"))
	ph.p.say("  decrypted on the phone: %s", wake.Payload)

	s, err = ph.open(ctx)
	if err != nil {
		return err
	}
	ph.p.say("The phone wakes and reconnects with Last-Event-ID: %s", ph.lastID)
	if err := ph.read(s, 3, "replayed"); err != nil {
		return err
	}
	origin.Emit(upstreamtest.Event{ID: "5", Data: "Sun is back"})
	if err := ph.read(s, 1, "live"); err != nil {
		return err
	}
	s.Close()
	return nil
}

func (ph *demoPhone) register(ctx context.Context, sub any) error {
	body, _ := json.Marshal(map[string]any{"push_subscription": sub, "subscriptions": []any{map[string]string{"upstream": "news"}}})
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := ph.call(ctx, "POST", "/v1/devices", demoToken, body, http.StatusCreated, &out); err != nil {
		return err
	}
	ph.id, ph.token = out.ID, out.Token
	ph.p.say("The phone subscribed to push and registered with the gateway: device %s", ph.id)
	return nil
}

func (ph *demoPhone) sleep(ctx context.Context) error {
	body, _ := json.Marshal(map[string]any{"last_event_ids": map[string]string{"news": ph.lastID}})
	return ph.call(ctx, "POST", "/v1/devices/"+ph.id+"/sleep", ph.token, body, http.StatusNoContent, nil)
}

func (ph *demoPhone) call(ctx context.Context, method, path, token string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, ph.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%w: %s %s answered %d", errDemo, method, path, resp.StatusCode)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// phoneStream is an open device stream.
type phoneStream struct {
	resp *http.Response
	dec  *upstream.Decoder
}

func (s *phoneStream) Close() { s.resp.Body.Close() }

func (ph *demoPhone) open(ctx context.Context) (*phoneStream, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", ph.base+"/v1/devices/"+ph.id+"/streams/news", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+ph.token)
	if ph.lastID != "" {
		req.Header.Set("Last-Event-ID", ph.lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: stream answered %d", errDemo, resp.StatusCode)
	}
	return &phoneStream{resp: resp, dec: upstream.NewDecoder(resp.Body)}, nil
}

func (ph *demoPhone) read(s *phoneStream, n int, how string) error {
	for range n {
		ev, err := s.dec.Next()
		if err != nil {
			return fmt.Errorf("%w: reading the stream: %v", errDemo, err)
		}
		ph.lastID = ev.LastEventID
		ph.p.say("  %-8s id=%-3s %s", how, ev.ID, strings.TrimSpace(ev.Data))
	}
	return nil
}
