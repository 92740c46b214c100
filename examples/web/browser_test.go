package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Budgets: the whole test must stay well under 30 s on 2 cores with -race.
const (
	testBudget  = 25 * time.Second
	stepTimeout = 10 * time.Second
)

// chromium finds Debian's chromium (installed by .ci/run when missing).
func chromium() string {
	const debian = "/usr/bin/chromium"
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() {
		return debian
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// browser is one headless Chromium tab and what its page logged.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu  sync.Mutex
	log []string // console calls and uncaught exceptions, shown on failure
}

// newBrowser starts Chromium with a fresh profile; t.Cleanup stops it and
// waits for the process to exit, before the profile directory goes.
func newBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Logf("page console:\n\t%s", strings.Join(b.log, "\n\t"))
		}
	})
	// Listen starts the browser; its calls stop with ctx.
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("starting %s: %v", execPath, err)
	}
	return b
}

// record keeps what the page logs; it runs on chromedp's reader goroutine,
// so it only appends.
func (b *browser) record(ev any) {
	var line string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		parts := []string{"console." + string(e.Type) + ":"}
		for _, a := range e.Args {
			parts = append(parts, string(a.Value)+a.Description)
		}
		line = strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		line = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
		if d.Exception != nil {
			line += " " + d.Exception.Description
		}
	default:
		return
	}
	b.mu.Lock()
	b.log = append(b.log, line)
	b.mu.Unlock()
}

// do runs steps within stepTimeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls a JavaScript predicate in the page.
func (b *browser) waitFor(what, predicate string) {
	b.t.Helper()
	b.do("waiting for "+what, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout)))
}

// eval evaluates expr in the page and decodes its value into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		b.t.Fatalf("evaluating %s: decoding %s: %v", expr, raw, err)
	}
}

// pageEvent is an entry of window.wakelineDemo.events.
type pageEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data string `json:"data"`
}

// events returns what the page received, in order.
func (b *browser) events() []pageEvent {
	b.t.Helper()
	var evs []pageEvent
	b.eval(`window.wakelineDemo.events`, &evs)
	return evs
}

// waitEvents waits until the page has received n events.
func (b *browser) waitEvents(n int) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("%d events", n), fmt.Sprintf(`window.wakelineDemo && window.wakelineDemo.events.length >= %d`, n))
}

// waitStatus waits for the status line of the page.
func (b *browser) waitStatus(status string) {
	b.t.Helper()
	b.waitFor("status "+status, fmt.Sprintf(`document.getElementById('status').dataset.status === %q`, status))
}

// item is the origin's n-th event: every third is a named "headline".
func item(n int) upstreamtest.Event {
	ev := upstreamtest.Event{ID: strconv.Itoa(n), Data: fmt.Sprintf("item %d", n)}
	if n%3 == 0 {
		ev.Type = "headline"
	}
	return ev
}

// want is what the page shows for items from..to.
func want(from, to int) []pageEvent {
	var evs []pageEvent
	for n := from; n <= to; n++ {
		ev := item(n)
		typ := ev.Type
		if typ == "" {
			typ = "message"
		}
		evs = append(evs, pageEvent{ID: ev.ID, Type: typ, Data: ev.Data})
	}
	return evs
}

// checkEvents compares what the page received with items 1..n, exactly:
// the order, and no event twice or missing.
func (b *browser) checkEvents(when string, n int) {
	b.t.Helper()
	got, exp := b.events(), want(1, n)
	if !slices.Equal(got, exp) {
		b.t.Fatalf("%s: the page received\n\t%v\nwant\n\t%v", when, got, exp)
	}
	var dom []string
	b.eval(`Array.from(document.querySelectorAll('#events li')).map((li) => li.textContent)`, &dom)
	var expDOM []string
	for _, ev := range exp {
		expDOM = append(expDOM, fmt.Sprintf("#%s %s: %s", ev.ID, ev.Type, ev.Data))
	}
	if !slices.Equal(dom, expDOM) {
		b.t.Fatalf("%s: the page shows\n\t%q\nwant\n\t%q", when, dom, expDOM)
	}
}

// TestPageReplaysWhatItMissed drives the example page in headless Chromium
// against an in-process gateway: live events, a lost connection during
// which the origin goes on (the page's EventSource comes back by itself
// with Last-Event-ID and shows exactly what it missed), then the page's
// Sleep button (POST /sleep, a decrypted wake at the push service) and
// Connect again.
func TestPageReplaysWhatItMissed(t *testing.T) {
	execPath := chromium()
	if execPath == "" {
		t.Skip("no chromium: neither /usr/bin/chromium nor chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), testBudget)
	defer cancel()
	gw := startGateway(t)
	b := newBrowser(t, execPath)

	sub, err := gw.push.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	rawSub, _ := json.Marshal(sub)
	q := url.Values{"token": {regToken}, "upstream": {"news"}, "types": {"headline"}, "subscription": {string(rawSub)}}
	b.do("opening the page", chromedp.Navigate(gw.url+"/demo/?"+q.Encode()))
	b.waitStatus("open")
	var dev struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	b.eval(`window.wakelineDemo.client.state`, &dev)
	if dev.ID == "" || dev.Token == "" {
		t.Fatalf("the page registered no device: %+v", dev)
	}
	// The gateway follows the origin once a device needs it; what the
	// origin emits before that is not the device's.
	select {
	case <-gw.origin.Connected():
	case <-ctx.Done():
		t.Fatal("the gateway did not connect to the origin")
	}

	liveEvents(t, gw, b, 1, 3)
	lostConnection(t, ctx, gw, b, dev.ID, dev.Token)
	liveEvents(t, gw, b, 7, 8)
	sleepAndWake(t, ctx, gw, b, dev.ID, dev.Token)
}

// liveEvents emits items from..to and waits for the page to show them.
func liveEvents(t *testing.T, gw *gateway, b *browser, from, to int) {
	t.Helper()
	for n := from; n <= to; n++ {
		gw.origin.Emit(item(n))
	}
	b.waitEvents(to)
	b.checkEvents(fmt.Sprintf("live events %d..%d", from, to), to)
}

// lostConnection cuts the page's stream and keeps its network down while
// items 4..6 come, then lets it back.
func lostConnection(t *testing.T, ctx context.Context, gw *gateway, b *browser, id, token string) {
	t.Helper()
	drainStreams(gw.net)
	gw.net.cut()
	gw.waitState(ctx, id, token, "the stream to be gone", func(s deviceState) bool { return !s.Subscriptions[0].Connected })
	for n := 4; n <= 6; n++ {
		gw.origin.Emit(item(n))
	}
	gw.waitState(ctx, id, token, "3 pending events", func(s deviceState) bool { return s.Subscriptions[0].Pending == 3 })
	// Nothing is open for the device: the gateway wakes it, counting what
	// was stored when it claimed the wake: 1 to 3 of the missed events.
	w := gw.wake(ctx)
	if w.Msg.Type != push.WakeType || w.Msg.Device != id || w.Msg.Upstream != "news" || w.Msg.Pending < 1 || w.Msg.Pending > 3 {
		t.Errorf("wake while the network was down: %+v", w.Msg)
	}
	t.Logf("wake while the network was down: %s", w.Payload)
	if n := len(b.events()); n != 3 {
		t.Fatalf("the page has %d events while its network is down, want 3", n)
	}
	gw.net.restore()
	b.waitEvents(6)
	b.waitStatus("open")
	b.checkEvents("after the network came back", 6)
	// EventSource came back by itself, resuming with the header.
	select {
	case r := <-gw.net.streams:
		if r.lastEventID != "3" {
			t.Errorf("the page reconnected with Last-Event-ID %q (query %q), want 3", r.lastEventID, r.query)
		}
	case <-ctx.Done():
		t.Fatal("no stream request after the network came back")
	}
}

// sleepAndWake presses Sleep: the page hands its stream over, item 9 wakes
// the device through the push service, and Connect shows item 9.
func sleepAndWake(t *testing.T, ctx context.Context, gw *gateway, b *browser, id, token string) {
	t.Helper()
	b.do("pressing Sleep", chromedp.Click(chromedp.ID("sleep")))
	b.waitStatus("sleeping")
	select {
	case s := <-gw.net.sleeps:
		var body struct {
			LastEventIDs map[string]string `json:"last_event_ids"`
		}
		if err := json.Unmarshal([]byte(s.body), &body); err != nil || s.status != http.StatusNoContent || body.LastEventIDs["news"] != "8" {
			t.Fatalf("sleep hand-over: %d %s, want 204 after last_event_ids {news: 8}", s.status, s.body)
		}
	case <-ctx.Done():
		t.Fatal("the page sent no POST .../sleep")
	}
	gw.waitState(ctx, id, token, "the stream to be handed over", func(s deviceState) bool { return !s.Subscriptions[0].Connected })
	gw.origin.Emit(item(9))
	w := gw.wake(ctx)
	if w.Msg != (push.Message{Type: push.WakeType, Device: id, Upstream: "news", Pending: 1, LastEventID: "9"}) {
		t.Errorf("wake after sleep: %s, want pending 1 and last_event_id 9", w.Payload)
	}
	if n := len(b.events()); n != 8 {
		t.Fatalf("the page has %d events while asleep, want 8", n)
	}
	b.do("pressing Connect", chromedp.Click(chromedp.ID("connect")))
	b.waitEvents(9)
	b.waitStatus("open")
	b.checkEvents("after waking", 9)
}
