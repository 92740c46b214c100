package proxy_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// A device that stops reading is cut off without slowing anyone else,
// holds no queue in the gateway, and gets what it missed by Last-Event-ID.
func TestSlowDeviceIsDroppedAndResumes(t *testing.T) {
	e := newEnv(t, nil)
	e.stop()
	e.slowAfter = 300 * time.Millisecond
	e.start()
	slow, fast := e.register("news"), e.register("news")
	e.waitConnected()
	stalled := e.open(slow, "news", "") // never read until it is dropped
	live := e.open(fast, "news", "")

	const n = 200 // 200 × 64 KiB overfills the loopback socket buffers
	big := strings.Repeat("x", 64<<10)
	want := make([]string, n)
	for i := range n {
		want[i] = big + strconv.Itoa(i)
		e.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: want[i]})
	}
	live.expect(want...)
	e.eventually("the slow device dropped", func() bool {
		return metric(t, e, "wakeline_device_streams_dropped_slow_total") >= 1
	})

	got := 0
	last := ""
	for {
		ev, err := stalled.dec.Next()
		if err != nil {
			break
		}
		if ev.Data != want[got] {
			t.Fatalf("slow device event %d out of order", got)
		}
		got, last = got+1, ev.ID
	}
	if got == n {
		t.Fatal("the slow device got everything: it was never behind")
	}
	resumed := e.open(slow, "news", last)
	resumed.expect(want[got:]...)
}

// metric reads one unlabelled series from /metrics.
func metric(t *testing.T, e *env, name string) float64 {
	t.Helper()
	resp, err := http.Get(e.front.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
