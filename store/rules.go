package store

import (
	"fmt"
	"strings"
	"time"
)

// The rules in this file are shared by every backend so that they agree on
// the edge cases the conformance suite checks.

// MaxNameLen bounds stream names, device ids and upstream names, in bytes.
const MaxNameLen = 1024

// CheckName reports whether s can name a stream, a device or an upstream:
// non-empty, at most MaxNameLen bytes, without NUL (backends build composite
// keys with it). Device ids must also be free of '/', since DeleteDevice
// removes the streams named "d/<id>/...".
func CheckName(kind, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("store: empty %s name: %w", kind, ErrInvalid)
	case len(s) > MaxNameLen:
		return fmt.Errorf("store: %s name longer than %d bytes: %w", kind, MaxNameLen, ErrInvalid)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("store: %s name %q contains NUL: %w", kind, s, ErrInvalid)
	}
	return nil
}

// CheckDevice reports whether d can be stored: a valid id without '/', and
// subscriptions with valid upstream and stream names, each upstream at most
// once (cursors and wakes are kept per device and upstream).
func CheckDevice(d *Device) error {
	if err := CheckName("device", d.ID); err != nil {
		return err
	}
	if strings.IndexByte(d.ID, '/') >= 0 {
		return fmt.Errorf("store: device id %q contains '/': %w", d.ID, ErrInvalid)
	}
	seen := make(map[string]bool, len(d.Subscriptions))
	for _, sub := range d.Subscriptions {
		if err := CheckName("upstream", sub.Upstream); err != nil {
			return err
		}
		if err := CheckName("stream", sub.Stream); err != nil {
			return err
		}
		if seen[sub.Upstream] {
			return fmt.Errorf("store: device %q subscribes to upstream %q twice: %w", d.ID, sub.Upstream, ErrInvalid)
		}
		seen[sub.Upstream] = true
	}
	return nil
}

// DeviceStreamPrefix is the prefix of the per-device streams that
// DeleteDevice removes with the device.
func DeviceStreamPrefix(id string) string { return "d/" + id + "/" }

// ReadStart says where a Read after position after begins, given the oldest
// kept position (0 when nothing is kept) and the last assigned one (0 when
// none was): the first position to return (nothing to return when it is
// above last or oldest is 0) and whether the page reports a gap.
//
// A gap is reported when events after the asked position were evicted, or
// when the position is beyond anything assigned (a client of another
// store, or a stream deleted and re-created); then reading starts at the
// oldest kept event. Asking after 0, or after last, is never a gap.
func ReadStart(oldest, last, after uint64) (from uint64, gap bool) {
	switch {
	case after == 0:
		return oldest, false
	case after > last:
		return oldest, true
	case after == last:
		return last + 1, false
	case oldest == 0 || after+1 < oldest:
		// Events after the asked position existed and were evicted.
		return oldest, true
	}
	return after + 1, false
}

// Pending is the number of kept events after cursor, given the oldest kept
// position (0 when nothing is kept) and the last assigned one. Positions are
// contiguous within a stream, so this needs no scan.
func Pending(oldest, last, cursor uint64) int64 {
	if oldest == 0 || cursor >= last {
		return 0
	}
	from := max(cursor, oldest-1)
	return int64(last - from)
}

// Outside reports whether the event at pos, received at received, falls
// outside r when the stream's last position is last: more than MaxEvents
// newer events exist counting itself, or it is older than MaxAge at now.
func (r Retention) Outside(pos, last uint64, received, now time.Time) bool {
	if r.MaxEvents > 0 && last-pos >= uint64(r.MaxEvents) {
		return true
	}
	return r.MaxAge > 0 && now.Sub(received) > r.MaxAge
}
