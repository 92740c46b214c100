package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

func testDeviceCRUD(t *testing.T, s store.Store) {
	ctx := context.Background()
	d := device("dev1")
	d.PushState = store.PushState{Status: store.PushFailing, LastPushAt: t0.Add(time.Minute), LastError: "503"}
	mustCreate(t, s, d)
	got, err := s.Device(ctx, "dev1")
	must(t, "Device", err)
	wantDevice(t, "Device after create", got, d)

	other := device("dev1")
	other.Push.Endpoint = "https://push.example/other"
	wantErr(t, "CreateDevice of a taken id", s.CreateDevice(ctx, other), store.ErrExists)
	got, _ = s.Device(ctx, "dev1")
	wantDevice(t, "Device after a refused create", got, d)

	_, err = s.Device(ctx, "nobody")
	wantErr(t, "Device of an unknown id", err, store.ErrNotFound)

	bare := store.Device{ID: "bare"}
	mustCreate(t, s, bare)
	got, err = s.Device(ctx, "bare")
	must(t, "Device bare", err)
	wantDevice(t, "device without subscriptions", got, bare)
}

func testDeviceInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	bad := map[string]func(*store.Device){
		"empty id":        func(d *store.Device) { d.ID = "" },
		"slash in id":     func(d *store.Device) { d.ID = "a/b" },
		"NUL in id":       func(d *store.Device) { d.ID = "a\x00b" },
		"long id":         func(d *store.Device) { d.ID = strings.Repeat("i", store.MaxNameLen+1) },
		"empty stream":    func(d *store.Device) { d.Subscriptions[0].Stream = "" },
		"empty upstream":  func(d *store.Device) { d.Subscriptions[0].Upstream = "" },
		"twice upstream":  func(d *store.Device) { d.Subscriptions[1].Upstream = "news" },
		"NUL in stream":   func(d *store.Device) { d.Subscriptions[1].Stream = "u/\x00" },
		"NUL in upstream": func(d *store.Device) { d.Subscriptions[1].Upstream = "m\x00" },
	}
	for name, spoil := range bad {
		d := device("ok")
		spoil(&d)
		wantErr(t, "CreateDevice with "+name, s.CreateDevice(ctx, d), store.ErrInvalid)
	}
	if ids := deviceIDs(t, s, ""); len(ids) != 0 {
		t.Fatalf("refused devices were stored: %v", ids)
	}
	mustCreate(t, s, device("ok"))
	for name, spoil := range bad {
		if strings.Contains(name, "id") {
			continue
		}
		_, err := s.UpdateDevice(ctx, "ok", func(d *store.Device) error { spoil(d); return nil })
		wantErr(t, "UpdateDevice with "+name, err, store.ErrInvalid)
	}
	got, _ := s.Device(ctx, "ok")
	wantDevice(t, "after refused updates", got, device("ok"))
}

func testUpdateDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	want := device("dev1")
	want.Push.Endpoint = "https://push.example/rotated"
	want.PushState = store.PushState{Status: store.PushGone, LastError: "410"}
	got, err := s.UpdateDevice(ctx, "dev1", func(d *store.Device) error {
		d.Push.Endpoint = want.Push.Endpoint
		d.PushState = want.PushState
		return nil
	})
	must(t, "UpdateDevice", err)
	wantDevice(t, "UpdateDevice result", got, want)
	got, _ = s.Device(ctx, "dev1")
	wantDevice(t, "Device after update", got, want)

	errMine := errors.New("mine")
	_, err = s.UpdateDevice(ctx, "dev1", func(d *store.Device) error {
		d.Push.Endpoint = "https://push.example/lost"
		d.Subscriptions = nil
		return errMine
	})
	wantErr(t, "UpdateDevice with a failing fn", err, errMine)
	got, _ = s.Device(ctx, "dev1")
	wantDevice(t, "Device after a failed update", got, want)

	_, err = s.UpdateDevice(ctx, "dev1", func(d *store.Device) error { d.ID = "dev2"; return nil })
	wantErr(t, "UpdateDevice changing the id", err, store.ErrInvalid)
	_, err = s.UpdateDevice(ctx, "nobody", func(*store.Device) error { return nil })
	wantErr(t, "UpdateDevice of an unknown id", err, store.ErrNotFound)
	if _, err := s.Device(ctx, "dev2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused id change created dev2: %v", err)
	}
}

func testUpdateDeviceDropsCursors(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	mail := store.DeviceStreamPrefix("dev1") + "mail"
	mustAppend(t, s, "u/news", evs("n", 5), "n5")
	mustAppend(t, s, mail, evs("m", 5), "m5")
	for _, up := range []string{"news", "mail"} {
		must(t, "SetCursor", s.SetCursor(ctx, "dev1", up, 3))
		if ok, err := s.ClaimWake(ctx, "dev1", up, t0, time.Hour); !ok || err != nil {
			t.Fatalf("ClaimWake(%s) = %v, %v", up, ok, err)
		}
	}
	// Drop mail, move news to another stream.
	_, err := s.UpdateDevice(ctx, "dev1", func(d *store.Device) error {
		d.Subscriptions = []store.Subscription{{Upstream: "news", Stream: "u/news2"}}
		return nil
	})
	must(t, "UpdateDevice", err)
	_, _, err = s.Cursor(ctx, "dev1", "mail")
	wantErr(t, "Cursor of a dropped upstream", err, store.ErrNotFound)
	if pos, pending, err := s.Cursor(ctx, "dev1", "news"); err != nil || pos != 0 || pending != 0 {
		t.Fatalf("Cursor of a moved upstream = %d, %d, %v; want 0, 0", pos, pending, err)
	}
	if got := deviceIDs(t, s, "u/news"); len(got) != 0 {
		t.Fatalf("Devices(u/news) after moving = %v", got)
	}
	if got := deviceIDs(t, s, "u/news2"); !slices.Equal(got, []string{"dev1"}) {
		t.Fatalf("Devices(u/news2) = %v", got)
	}
	// The dropped streams keep their logs.
	wantPositions(t, "dropped per-device log", readAll(t, s, mail), seq(1, 5))
	wantPositions(t, "dropped shared log", readAll(t, s, "u/news"), seq(1, 5))

	// Subscribing again starts from nothing: no cursor, no outstanding wake.
	_, err = s.UpdateDevice(ctx, "dev1", func(d *store.Device) error {
		d.Subscriptions = device("dev1").Subscriptions
		return nil
	})
	must(t, "UpdateDevice back", err)
	for _, up := range []string{"news", "mail"} {
		if pos, pending, err := s.Cursor(ctx, "dev1", up); err != nil || pos != 0 || pending != 5 {
			t.Fatalf("Cursor(%s) after resubscribing = %d, %d, %v; want 0, 5", up, pos, pending, err)
		}
		if ok, err := s.ClaimWake(ctx, "dev1", up, t0, time.Hour); !ok || err != nil {
			t.Fatalf("ClaimWake(%s) after resubscribing = %v, %v; want a win", up, ok, err)
		}
	}
	// An update that keeps a subscription keeps its cursor and wake.
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "news", 4))
	_, err = s.UpdateDevice(ctx, "dev1", func(d *store.Device) error { d.Push.Endpoint = "x"; return nil })
	must(t, "UpdateDevice", err)
	if pos, _, _ := s.Cursor(ctx, "dev1", "news"); pos != 4 {
		t.Fatalf("Cursor after an unrelated update = %d, want 4", pos)
	}
	if ok, _ := s.ClaimWake(ctx, "dev1", "news", t0, time.Hour); ok {
		t.Fatal("an unrelated update cleared the outstanding wake")
	}
}

func testDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b, c := device("a"), device("b"), device("c")
	c.Subscriptions = c.Subscriptions[1:] // mail only
	for _, d := range []store.Device{a, b, c} {
		mustCreate(t, s, d)
	}
	for stream, want := range map[string][]string{
		"":                                     {"a", "b", "c"},
		"u/news":                               {"a", "b"},
		store.DeviceStreamPrefix("c") + "mail": {"c"},
		"u/nothing":                            nil,
	} {
		if got := deviceIDs(t, s, stream); !slices.Equal(got, want) {
			t.Fatalf("Devices(%q) = %v, want %v", stream, got, want)
		}
	}
	var seen []store.Device
	must(t, "Devices", s.Devices(ctx, "u/news", func(d store.Device) error { seen = append(seen, d); return nil }))
	for _, d := range seen {
		wantDevice(t, "Devices reports the whole device", d, device(d.ID))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Devices(ctx, "", func(store.Device) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Devices with fn failing: %v after %d calls; want stop after 1", err, calls)
	}
	wantErr(t, "Devices of a bad stream name", s.Devices(ctx, "u/\x00", func(store.Device) error { return nil }), store.ErrInvalid)
}

// testDevicesManyAndWriting lists more devices than a backend is likely to
// read at once, while fn writes to the store.
func testDevicesManyAndWriting(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 600
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 6 {
		wg.Go(func() {
			for i := w; i < n; i += 6 {
				d := device(fmt.Sprintf("dev%04d", i))
				if i%2 == 1 {
					d.Subscriptions = d.Subscriptions[1:]
				}
				errs <- s.CreateDevice(ctx, d)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, "CreateDevice", err)
	}
	mustAppend(t, s, "u/news", evs("n", 3), "n3")
	var ids []string
	err := s.Devices(ctx, "u/news", func(d store.Device) error {
		ids = append(ids, d.ID)
		// A writer inside fn must not deadlock the iteration.
		return s.SetCursor(ctx, d.ID, "news", 2)
	})
	must(t, "Devices", err)
	if len(ids) != n/2 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != n/2 {
		t.Fatalf("Devices(u/news) reported %d devices (%d distinct), want %d", len(ids),
			len(slices.Compact(slices.Sorted(slices.Values(ids)))), n/2)
	}
	if all := deviceIDs(t, s, ""); len(all) != n {
		t.Fatalf("Devices(\"\") reported %d devices, want %d", len(all), n)
	}
	if _, pending, err := s.Cursor(ctx, "dev0000", "news"); err != nil || pending != 1 {
		t.Fatalf("Cursor after the writes in fn: pending %d, %v; want 1", pending, err)
	}
}

func testDeleteDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, device("dev1"))
	mustCreate(t, s, device("dev10")) // shares a name prefix
	mail1 := store.DeviceStreamPrefix("dev1") + "mail"
	mail10 := store.DeviceStreamPrefix("dev10") + "mail"
	mustAppend(t, s, "u/news", evs("n", 3), "n3")
	mustAppend(t, s, mail1, evs("m", 4), "m4")
	mustAppend(t, s, mail1+"/extra", evs("x", 1), "x1") // also only its own
	mustAppend(t, s, mail10, evs("t", 2), "t2")
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "mail", 2))
	if _, err := s.ClaimWake(ctx, "dev1", "news", t0, time.Hour); err != nil {
		t.Fatal(err)
	}

	must(t, "DeleteDevice", s.DeleteDevice(ctx, "dev1"))
	_, err := s.Device(ctx, "dev1")
	wantErr(t, "Device after delete", err, store.ErrNotFound)
	_, _, err = s.Cursor(ctx, "dev1", "mail")
	wantErr(t, "Cursor after delete", err, store.ErrNotFound)
	_, err = s.ClaimWake(ctx, "dev1", "news", t0, time.Hour)
	wantErr(t, "ClaimWake after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteDevice again", s.DeleteDevice(ctx, "dev1"), store.ErrNotFound)

	for _, stream := range []string{mail1, mail1 + "/extra"} {
		p := mustRead(t, s, stream, 0, 10)
		if len(p.Events) != 0 || p.Oldest != 0 {
			t.Fatalf("per-device log %s survived its device: %+v", stream, p)
		}
		if resume, _, _ := s.Head(ctx, stream); resume != "" {
			t.Fatalf("per-device stream %s kept its resume id %q", stream, resume)
		}
		if _, err := s.Lookup(ctx, stream, "m1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Lookup in a deleted stream: %v", err)
		}
	}
	wantPositions(t, "shared log", readAll(t, s, "u/news"), seq(1, 3))
	wantPositions(t, "other device's log", readAll(t, s, mail10), seq(1, 2))
	if got := deviceIDs(t, s, "u/news"); !slices.Equal(got, []string{"dev10"}) {
		t.Fatalf("Devices(u/news) after delete = %v", got)
	}
	if _, _, err := s.Cursor(ctx, "dev10", "mail"); err != nil {
		t.Fatalf("the other device lost its subscription: %v", err)
	}
}

// testDeleteDeviceReuseID re-creates a deleted device: its per-device
// stream starts empty but never reuses a position.
func testDeleteDeviceReuseID(t *testing.T, s store.Store) {
	ctx := context.Background()
	mail := store.DeviceStreamPrefix("dev1") + "mail"
	mustCreate(t, s, device("dev1"))
	mustAppend(t, s, mail, evs("m", 4), "m4")
	must(t, "SetCursor", s.SetCursor(ctx, "dev1", "mail", 4))
	if _, err := s.ClaimWake(ctx, "dev1", "mail", t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, "DeleteDevice", s.DeleteDevice(ctx, "dev1"))
	mustCreate(t, s, device("dev1"))
	if pos, pending, err := s.Cursor(ctx, "dev1", "mail"); err != nil || pos != 0 || pending != 0 {
		t.Fatalf("Cursor of the re-created device = %d, %d, %v; want 0, 0", pos, pending, err)
	}
	if ok, err := s.ClaimWake(ctx, "dev1", "mail", t0, time.Hour); !ok || err != nil {
		t.Fatalf("ClaimWake of the re-created device = %v, %v; want a win", ok, err)
	}
	out := mustAppend(t, s, mail, evs("n", 2), "n2")
	wantPositions(t, "re-created stream", out, []uint64{5, 6})
	// A device that resumes from before the deletion is told of a gap.
	wantPage(t, "read after 2", mustRead(t, s, mail, 2, 10), true, 5, 6, []uint64{5, 6})
	if pos, pending, _ := s.Cursor(ctx, "dev1", "mail"); pos != 0 || pending != 2 {
		t.Fatalf("Cursor = %d, %d; want 0, 2", pos, pending)
	}
}
