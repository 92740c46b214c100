package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// emit sends events with ids and data "e<id>".
func emit(o *upstreamtest.Origin, ids ...string) {
	for _, id := range ids {
		o.Emit(upstreamtest.Event{ID: id, Data: "e" + id})
	}
}

// waitConnected waits for the gateway's connection to the origin.
func (e *env) waitConnected() http.Header {
	e.t.Helper()
	select {
	case h := <-e.origin.Connected():
		return h
	case <-e.ctx.Done():
		e.t.Fatal("the gateway did not connect to the origin")
	}
	return nil
}

func TestFullLoop(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()

	s := e.open(d, "news", "")
	emit(e.origin, "1")
	if ev := s.expect("e1")[0]; ev.ID != "1" {
		t.Fatalf("live event id %q, want 1", ev.ID)
	}
	s.close()
	if code := e.do("POST", "/v1/devices/"+d.ID+"/sleep", d.Token, map[string]any{"last_event_ids": map[string]string{"news": "1"}}, nil); code != http.StatusNoContent {
		t.Fatalf("sleep: %d", code)
	}

	emit(e.origin, "2", "3", "4")
	w := e.wake()
	if w.Msg.Type != "wakeline.wake" || w.Msg.Device != d.ID || w.Msg.Upstream != "news" || w.Msg.Pending < 1 {
		t.Fatalf("wake payload %+v", w.Msg)
	}
	if w.Endpoint != d.sub.Endpoint || w.Header.Get("Topic") != push.Topic(d.ID, "news") {
		t.Fatalf("wake went to %q with topic %q", w.Endpoint, w.Header.Get("Topic"))
	}
	if got := w.Header.Get("Urgency"); got != e.cfg.Push.Urgency {
		t.Fatalf("Urgency %q", got)
	}

	s = e.open(d, "news", "1")
	s.expect("e2", "e3", "e4")
	emit(e.origin, "5")
	s.expect("e5")
	e.noWake() // one wake for the burst, none while connected

	// The cursor moves once the gateway's write returned, which may be
	// after the device read the event.
	var st state
	// The push answer too is recorded after the push service saw the wake.
	e.eventually("cursor at 5 and the push recorded", func() bool {
		st = e.state(d)
		return st.Subscriptions[0].LastEventID == "5" && st.Push.LastPushAt != nil
	})
	if st.Push.Status != store.PushOK {
		t.Fatalf("push state %+v", st.Push)
	}
	if sub := st.Subscriptions[0]; !sub.Connected || sub.Pending != 0 {
		t.Fatalf("subscription state %+v", sub)
	}
}

func TestReplayFromEveryResumePoint(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	emit(e.origin, "1", "2", "3")
	e.origin.Emit(upstreamtest.Event{Data: "no id"}) // the gateway names it
	emit(e.origin, "5")
	evs := s.expect("e1", "e2", "e3", "no id", "e5")
	own := evs[3].ID
	if own == "" || own == "3" {
		t.Fatalf("event without an origin id got id %q", own)
	}
	s.close()

	cases := []struct {
		name, header, query string
		want                []string
	}{
		{"header", "2", "", []string{"e3", "no id", "e5"}},
		{"query", "", "3", []string{"no id", "e5"}},
		{"header wins over query", "1", "3", []string{"e2", "e3", "no id", "e5"}},
		{"gateway's own id", own, "", []string{"e5"}},
		{"stored cursor", "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.query != "" {
				path = "&last_event_id=" + c.query
			}
			s := e.openPath(d, "news", c.header, path)
			s.expect(c.want...)
			s.close()
		})
	}
}

func TestNoGapNorDuplicateAtTheSeam(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	// Events keep arriving while devices replay: each must see every id
	// once, in order, whichever side of the seam it fell on.
	const n = 200
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("e%d", i))
	}
	first := e.open(d, "news", "")
	for i := range n / 2 {
		emit(e.origin, strconv.Itoa(i))
	}
	first.expect(want[:n/2]...) // stored
	s := e.open(d, "news", "0")
	go func() {
		for i := n / 2; i < n; i++ {
			emit(e.origin, strconv.Itoa(i))
		}
	}()
	s.expect(want[1:]...)
}

func TestGapWhenResumePointIsGone(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	emit(e.origin, "1", "2", "3", "4", "5", "6")
	s.expect("e1", "e2", "e3", "e4", "e5", "e6")
	s.close()
	// Retention as the janitor applies it: keep the newest three.
	if _, err := e.st.Evict(e.ctx, "u/news", store.Retention{MaxEvents: 3}, time.Now(), 100); err != nil {
		t.Fatal(err)
	}
	for _, asked := range []string{"1", "never-seen"} {
		s := e.open(d, "news", asked)
		gap := s.next()
		var body map[string]string
		if gap.Type != "wakeline.gap" || json.Unmarshal([]byte(gap.Data), &body) != nil {
			t.Fatalf("first event %+v, want wakeline.gap", gap)
		}
		if body["last_event_id"] != asked || body["oldest_event_id"] != "4" {
			t.Fatalf("gap data %v", body)
		}
		s.expect("e4", "e5", "e6")
		s.close()
	}
}

func TestSharedUpstreamHasOneOriginConnection(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register("news")
	e.waitConnected()
	b := e.register("news")
	sa, sb := e.open(a, "news", ""), e.open(b, "news", "")
	emit(e.origin, "1", "2")
	sa.expect("e1", "e2")
	sb.expect("e1", "e2")
	if n := len(e.origin.Requests()); n != 1 {
		t.Fatalf("%d origin connections for two devices, want 1", n)
	}
}

func TestPerDeviceUpstreamUsesDeviceHeaders(t *testing.T) {
	f := false
	e := newEnv(t, func(c *config.Config) {
		c.Upstreams[0].Shared = &f
		c.Upstreams[0].DeviceHeaders = []string{"Authorization"}
		c.Upstreams[0].Headers = map[string]string{"X-Gateway": "wakeline"}
	})
	sub := func(tok string) map[string]any {
		return map[string]any{"upstream": "news", "headers": map[string]string{"authorization": "Bearer " + tok}}
	}
	a := e.register(sub("alice"))
	ha := e.waitConnected()
	b := e.register(sub("bob"))
	hb := e.waitConnected()
	if ha.Get("Authorization") != "Bearer alice" || hb.Get("Authorization") != "Bearer bob" || ha.Get("X-Gateway") != "wakeline" {
		t.Fatalf("origin saw %v and %v", ha, hb)
	}
	sa, sb := e.open(a, "news", ""), e.open(b, "news", "")
	emit(e.origin, "1")
	sa.expect("e1")
	sb.expect("e1")

	// Bob goes: his connection ends, Alice's stays.
	if code := e.do("DELETE", "/v1/devices/"+b.ID, b.Token, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if _, err := sb.dec.Next(); err == nil {
		t.Fatal("the deleted device's stream is still open")
	}
	emit(e.origin, "2")
	sa.expect("e2")
	if n := e.origin.Open(); n != 1 {
		t.Fatalf("%d origin connections open, want Alice's only", n)
	}
}

func TestDeviceIsolation(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.register("news"), e.register("news")
	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"own", "GET", "/v1/devices/" + a.ID, a.Token, 200},
		{"no token", "GET", "/v1/devices/" + a.ID, "", 401},
		{"wrong secret", "GET", "/v1/devices/" + a.ID, a.ID + ".nope", 401},
		{"garbage token", "GET", "/v1/devices/" + a.ID, "garbage", 401},
		{"another device's token", "GET", "/v1/devices/" + a.ID, b.Token, 404},
		{"another device's delete", "DELETE", "/v1/devices/" + a.ID, b.Token, 404},
		{"another device's stream", "GET", "/v1/devices/" + a.ID + "/streams/news", b.Token, 404},
		{"another device's sleep", "POST", "/v1/devices/" + a.ID + "/sleep", b.Token, 404},
		{"registration token is no device token", "GET", "/v1/devices/" + a.ID, regToken, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body map[string]any
			var req any
			if c.method == "POST" {
				req = map[string]any{"last_event_ids": map[string]string{}}
			}
			code := e.do(c.method, c.path, c.token, req, &body)
			if code != c.want {
				t.Fatalf("%d, want %d (%v)", code, c.want, body)
			}
			if code >= 400 && body["error"] == "" {
				t.Fatalf("error body %v", body)
			}
		})
	}
}

func TestRestartMidStreamLosesAndDoublesNothing(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	emit(e.origin, "1", "2", "3")
	s.expect("e1", "e2", "e3")
	s.close()
	e.stop()

	emit(e.origin, "4", "5") // while the gateway is down
	e.start()
	if h := e.waitConnected(); h.Get("Last-Event-ID") != "3" {
		t.Fatalf("gateway resumed the origin with Last-Event-ID %q, want 3", h.Get("Last-Event-ID"))
	}
	s = e.open(d, "news", "2")
	s.expect("e3", "e4", "e5")
	emit(e.origin, "6")
	s.expect("e6")
}

func TestShutdownEndsStreamsWithRetryHint(t *testing.T) {
	e := newEnv(t, nil)
	d := e.register("news")
	e.waitConnected()
	s := e.open(d, "news", "")
	emit(e.origin, "1")
	s.expect("e1")
	e.stop()
	if _, err := s.dec.Next(); err == nil {
		t.Fatal("stream still open after shutdown")
	}
	if r, ok := s.dec.Retry(); !ok || r <= 0 {
		t.Fatalf("no retry hint: %v %v", r, ok)
	}
}

func TestGoneSubscriptionIsNotPushedAgain(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Push.RewakeAfter = time.Nanosecond })
	d := e.register("news")
	e.waitConnected()
	if err := e.push.Script(d.sub.Endpoint, pushtest.Answer{Status: http.StatusGone}); err != nil {
		t.Fatal(err)
	}
	emit(e.origin, "1")
	if w := e.wake(); w.Status != http.StatusGone {
		t.Fatalf("push service answered %d", w.Status)
	}
	e.eventually("push status gone", func() bool { return e.state(d).Push.Status == store.PushGone })
	emit(e.origin, "2")
	s := e.open(d, "news", "1")
	s.expect("e2")
	e.noWake()
}

// An idle device stream carries heartbeat comments and the retry hint.
func TestIdleStreamHasHeartbeats(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Stream.Heartbeat = 10 * time.Millisecond
		c.Stream.Retry = 1234 * time.Millisecond
	})
	d := e.register("news")
	req, _ := http.NewRequestWithContext(e.ctx, "GET", e.front.URL+"/v1/devices/"+d.ID+"/streams/news", nil)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() && len(lines) < 6 {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) < 3 || lines[0] != "retry: 1234" || !strings.HasPrefix(lines[1], ":") || !strings.HasPrefix(lines[2], ":") {
		t.Fatalf("stream began %q, want the retry hint then comments", lines)
	}
}
