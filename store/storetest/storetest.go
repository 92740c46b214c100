// Package storetest is the conformance suite of store.Store: Run checks the
// contract every backend must keep, RunReopen what must survive a restart,
// RunCrash what must survive a SIGKILL, and Bench measures the figures the
// gateway depends on. It knows nothing of any backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

// Opener returns a new, empty store for one subtest and arranges for it to
// be closed when the test ends (tolerating store.ErrClosed: the suite
// closes some stores itself).
type Opener func(t *testing.T) store.Store

// Run runs every conformance test against stores made by open. Subtests run
// in parallel, each with its own store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"AppendPositions", testAppendPositions},
		{"AppendRoundTrip", testAppendRoundTrip},
		{"AppendInvalid", testAppendInvalid},
		{"ReadPages", testReadPages},
		{"ReadGap", testReadGap},
		{"ReadEmptyStream", testReadEmptyStream},
		{"Lookup", testLookup},
		{"LookupAfterEvict", testLookupAfterEvict},
		{"HeadResumeID", testHeadResumeID},
		{"EvictMaxEvents", testEvictMaxEvents},
		{"EvictMaxAge", testEvictMaxAge},
		{"EvictAll", testEvictAll},
		{"DeviceCRUD", testDeviceCRUD},
		{"DeviceInvalid", testDeviceInvalid},
		{"UpdateDevice", testUpdateDevice},
		{"UpdateDeviceDropsCursors", testUpdateDeviceDropsCursors},
		{"Devices", testDevices},
		{"DevicesManyAndWriting", testDevicesManyAndWriting},
		{"DeleteDevice", testDeleteDevice},
		{"DeleteDeviceReuseID", testDeleteDeviceReuseID},
		{"Cursor", testCursor},
		{"CursorNotFound", testCursorNotFound},
		{"SetCursors", testSetCursors},
		{"CursorPendingAfterEvict", testCursorPendingAfterEvict},
		{"ClaimWake", testClaimWake},
		{"ClaimWakeConcurrent", testClaimWakeConcurrent},
		{"VAPIDKeys", testVAPIDKeys},
		{"VAPIDKeysConcurrent", testVAPIDKeysConcurrent},
		{"Close", testClose},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentAppends", testConcurrentAppends},
		{"ConcurrentMixed", testConcurrentMixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// t0 is a fixed instant for the tests that choose their own times.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// ev makes an event with an origin id.
func ev(id, data string) store.Event {
	return store.Event{ID: id, HasID: true, Type: "message", Data: data, Received: t0}
}

// evs makes n events with ids prefix+"1".. prefix+"n", received a second
// apart from t0.
func evs(prefix string, n int) []store.Event {
	out := make([]store.Event, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("%s%d", prefix, i+1), fmt.Sprintf("data %s%d", prefix, i+1))
		out[i].Received = t0.Add(time.Duration(i) * time.Second)
	}
	return out
}

func mustAppend(t testing.TB, s store.Store, stream string, events []store.Event, resumeID string) []store.Event {
	t.Helper()
	out, err := s.Append(context.Background(), stream, events, resumeID)
	if err != nil {
		t.Fatalf("Append(%q, %d events): %v", stream, len(events), err)
	}
	return out
}

func mustRead(t testing.TB, s store.Store, stream string, after uint64, limit int) store.Page {
	t.Helper()
	p, err := s.Read(context.Background(), stream, after, limit)
	if err != nil {
		t.Fatalf("Read(%q, after %d, limit %d): %v", stream, after, limit, err)
	}
	return p
}

// readAll reads stream after 0 in pages of 7 and checks that pages chain.
func readAll(t testing.TB, s store.Store, stream string) []store.Event {
	t.Helper()
	var all []store.Event
	var after uint64
	for {
		p := mustRead(t, s, stream, after, 7)
		if p.Gap {
			t.Fatalf("Read(%q, after %d): unexpected gap", stream, after)
		}
		if len(p.Events) == 0 {
			return all
		}
		all = append(all, p.Events...)
		after = p.Events[len(p.Events)-1].Pos
	}
}

func positions(events []store.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Pos
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for p := from; p <= to; p++ {
		out = append(out, p)
	}
	return out
}

func wantPositions(t testing.TB, what string, events []store.Event, want []uint64) {
	t.Helper()
	if got := positions(events); !slices.Equal(got, want) {
		t.Fatalf("%s: positions %v, want %v", what, got, want)
	}
}

// sameEvent compares everything but the position.
func sameEvent(a, b store.Event) bool {
	return a.ID == b.ID && a.HasID == b.HasID && a.Type == b.Type && a.Data == b.Data &&
		a.Received.Equal(b.Received)
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantPage(t testing.TB, what string, p store.Page, gap bool, oldest, last uint64, events []uint64) {
	t.Helper()
	if p.Gap != gap || p.Oldest != oldest || p.Last != last {
		t.Fatalf("%s: gap %v oldest %d last %d, want gap %v oldest %d last %d",
			what, p.Gap, p.Oldest, p.Last, gap, oldest, last)
	}
	wantPositions(t, what, p.Events, events)
}

// normDevice makes devices comparable: times in UTC without monotonic
// reading, and nil for empty slices and maps.
func normDevice(d store.Device) store.Device {
	d.CreatedAt = d.CreatedAt.UTC().Round(0)
	d.PushState.LastPushAt = d.PushState.LastPushAt.UTC().Round(0)
	if len(d.TokenHash) == 0 {
		d.TokenHash = nil
	}
	subs := make([]store.Subscription, 0, len(d.Subscriptions))
	for _, s := range d.Subscriptions {
		if len(s.Headers) == 0 {
			s.Headers = nil
		} else {
			s.Headers = maps.Clone(s.Headers)
		}
		subs = append(subs, s)
	}
	d.Subscriptions = subs
	if len(subs) == 0 {
		d.Subscriptions = nil
	}
	return d
}

func wantDevice(t testing.TB, what string, got, want store.Device) {
	t.Helper()
	if g, w := normDevice(got), normDevice(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// device makes a device subscribed to a shared upstream "news" and a
// per-device upstream "mail".
func device(id string) store.Device {
	d := store.Device{
		ID:        id,
		TokenHash: []byte("hash-of-" + id),
		PushState: store.PushState{Status: store.PushOK},
		CreatedAt: t0,
		Subscriptions: []store.Subscription{
			{Upstream: "news", Stream: "u/news"},
			{Upstream: "mail", Stream: store.DeviceStreamPrefix(id) + "mail",
				Headers: map[string]string{"Authorization": "Bearer " + id}},
		},
	}
	d.Push.Endpoint = "https://push.example/send/" + id
	d.Push.Keys.P256dh = "p256dh-" + id
	d.Push.Keys.Auth = "auth-" + id
	return d
}

func mustCreate(t testing.TB, s store.Store, d store.Device) {
	t.Helper()
	must(t, "CreateDevice "+d.ID, s.CreateDevice(context.Background(), d))
}

// deviceIDs lists the ids Devices reports for stream, sorted.
func deviceIDs(t testing.TB, s store.Store, stream string) []string {
	t.Helper()
	var ids []string
	must(t, "Devices "+stream, s.Devices(context.Background(), stream, func(d store.Device) error {
		ids = append(ids, d.ID)
		return nil
	}))
	slices.Sort(ids)
	return ids
}
