// Package store defines Store, the durable state of a wakeline gateway: the
// per-stream event logs an origin fills, the device registry, the delivery
// cursors and wake claims, and the gateway's VAPID keys.
//
// Implementations live in subpackages named after what they wrap (bolt, redis)
// and must pass the conformance suite in storetest. The interface says nothing
// of transactions or buckets so that each backend can keep its own shape.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

var (
	// ErrNotFound: no such device, stream or event id.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a device with that id is already registered.
	ErrExists = errors.New("store: already exists")
	// ErrClosed: the store was closed; every call after Close returns it.
	ErrClosed = errors.New("store: closed")
	// ErrInUse: another process holds the store (bolt's file lock).
	ErrInUse = errors.New("store: already in use by another process")
	// ErrNotAStore: the file or database is not a wakeline store, or is corrupt.
	ErrNotAStore = errors.New("store: not a wakeline store")
	// ErrNewerSchema: the store was written by a newer wakeline.
	ErrNewerSchema = errors.New("store: written by a newer schema version")
	// ErrInvalid: a bad argument (a name CheckName refuses, a device
	// CheckDevice refuses, a page limit or eviction batch below 1). Nothing
	// was stored.
	ErrInvalid = errors.New("store: invalid argument")
)

// Event is one event of a stream log, as the origin sent it.
type Event struct {
	// Pos is the gateway's own position of the event in its stream, assigned
	// by Append: 1 for the first event of a stream, then +1 for each event,
	// strictly increasing and never reused, even after eviction, restarts or
	// the deletion and re-creation of a stream of the same name.
	Pos uint64
	// ID is the value of the event's own id field; HasID says whether the
	// event carried one (an origin may send events without ids, and the
	// empty id is a legal value).
	ID    string
	HasID bool
	// Type is the event type ("message" when the origin set none).
	Type string
	// Data is the event's data, lines joined with LF.
	Data string
	// Received is when the gateway received the event; Append sets it to the
	// current time when it is zero. Stores keep it to the nanosecond, without
	// location or monotonic reading.
	Received time.Time
}

// Page is one bounded read of a stream log.
type Page struct {
	// Events after the asked position, in position order; at most the limit.
	Events []Event
	// Gap is true when the asked position is older than the oldest event
	// still kept (events after it were evicted) or newer than any position
	// ever assigned; Events then start at the oldest kept event.
	Gap bool
	// Oldest is the position of the oldest kept event, 0 when the log is empty.
	Oldest uint64
	// Last is the position of the newest event ever appended to the stream,
	// 0 when none was.
	Last uint64
}

// Retention bounds a stream log. Zero fields mean no bound of that kind.
type Retention struct {
	MaxEvents int
	MaxAge    time.Duration
}

// Log is the append-only event log of every origin stream. A stream is named
// by an opaque string chosen by the caller (proxy: "u/<upstream>" for a
// shared upstream, "d/<device>/<upstream>" for a per-device one) that
// CheckName accepts. Reading a stream never appended to is not an error: it
// is empty.
//
// All methods are safe for concurrent use.
type Log interface {
	// Append durably stores events at the end of stream and, in the same
	// atomic commit, sets the stream's resume id (the Last-Event-ID to send
	// to the origin on reconnect). It returns the events with Pos set. After
	// a crash at any instant either all of the batch and its resume id are
	// stored or none. Concurrent appends may share one durable commit. An
	// empty batch only sets the resume id. The caller's slice is not
	// modified.
	Append(ctx context.Context, stream string, events []Event, resumeID string) ([]Event, error)
	// Read returns at most limit (>= 1) events with a position greater than
	// after. Asking after 0 reads from the oldest kept event without a gap.
	// ReadStart states the gap rule every store follows.
	Read(ctx context.Context, stream string, after uint64, limit int) (Page, error)
	// Lookup returns the position of the most recent kept event whose origin
	// id is id, or ErrNotFound.
	Lookup(ctx context.Context, stream, id string) (uint64, error)
	// Head returns the stream's resume id and the position of its newest
	// event (0 and "" for a stream never appended to).
	Head(ctx context.Context, stream string) (resumeID string, last uint64, err error)
	// Evict removes at most batch (>= 1) events that fall outside r (see
	// Retention.Outside), oldest first, stopping at the first event that is
	// inside, and returns how many it removed. It is called repeatedly by a
	// background janitor (until it returns less than batch) and must not
	// block appends for long.
	Evict(ctx context.Context, stream string, r Retention, now time.Time, batch int) (int, error)
}

// PushSubscription is a browser's PushSubscription.toJSON().
type PushSubscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Push status values of a device.
const (
	PushOK      = "ok"
	PushFailing = "failing"
	PushGone    = "gone"
)

// PushState is what the gateway knows of a device's push subscription.
type PushState struct {
	Status     string    // PushOK, PushFailing or PushGone
	LastPushAt time.Time // last time a push service accepted a wake
	LastError  string    // short reason of the last failure, no secrets
}

// Subscription is one upstream a device follows.
type Subscription struct {
	Upstream string
	// Stream is the log the device reads: shared by every device of a shared
	// upstream, its own for a per-device one.
	Stream string
	// Headers are the device's own headers for a per-device origin connection.
	Headers map[string]string
}

// Device is a registered device.
type Device struct {
	ID            string
	TokenHash     []byte // hash of the device token; the token is never stored
	Push          PushSubscription
	PushState     PushState
	Subscriptions []Subscription
	CreatedAt     time.Time
}

// Registry is the device registry. All methods are safe for concurrent use.
type Registry interface {
	// CreateDevice stores a new device; ErrExists if its id is taken,
	// ErrInvalid if CheckDevice refuses it.
	CreateDevice(ctx context.Context, d Device) error
	// Device returns a device or ErrNotFound.
	Device(ctx context.Context, id string) (Device, error)
	// UpdateDevice atomically reads the device, applies fn and stores the
	// result; an error from fn aborts and is returned. Streams the device no
	// longer subscribes to keep their logs; its cursors and wake claims for
	// them go (also when an upstream's Stream changes). fn must be quick,
	// must not call the store, must not change the ID, and may be called
	// more than once (a store may retry it on a conflict).
	UpdateDevice(ctx context.Context, id string, fn func(*Device) error) (Device, error)
	// DeleteDevice removes the device, its cursors and wake claims, and the
	// logs of streams only it used (per-device streams "d/<id>/...").
	DeleteDevice(ctx context.Context, id string) error
	// Devices calls fn for every device subscribed to stream, or for every
	// device when stream is "", until fn returns an error, which it returns.
	// fn may call the store; it runs outside any transaction, so devices
	// created or deleted meanwhile may or may not be seen.
	Devices(ctx context.Context, stream string, fn func(Device) error) error
}

// Delivery tracks, per device and upstream, what was delivered and whether a
// wake message is outstanding. Every method returns ErrNotFound when the
// device does not exist or does not subscribe to upstream. All methods are
// safe for concurrent use.
type Delivery interface {
	// SetCursor records that the device received every event of its stream
	// for upstream up to pos. A cursor never moves backwards: a smaller pos
	// is ignored.
	SetCursor(ctx context.Context, device, upstream string, pos uint64) error
	// Cursor returns the device's cursor for upstream (0 when none was set)
	// and how many kept events of its stream lie after it, in constant time
	// (see Pending).
	Cursor(ctx context.Context, device, upstream string) (pos uint64, pending int64, err error)
	// ClaimWake atomically claims the right to send a wake message: it
	// succeeds when no wake is outstanding, or the outstanding one is older
	// than rewakeAfter (now - claimed >= rewakeAfter), and records now as its
	// time. Of concurrent claims exactly one succeeds.
	ClaimWake(ctx context.Context, device, upstream string, now time.Time, rewakeAfter time.Duration) (bool, error)
	// Claims need not survive a restart of the store (bolt keeps them in
	// memory): after one, a device may be woken once more.
	//
	// ClearWake ends the outstanding wake (the device connected).
	ClearWake(ctx context.Context, device, upstream string) error
}

// VAPIDKeys is the gateway's VAPID key pair, base64url encoded.
type VAPIDKeys struct {
	Public  string
	Private string
}

// Keys keeps the VAPID key pair generated when the config has none.
type Keys interface {
	// VAPIDKeys returns the stored key pair, or stores and returns the one
	// generate makes if there is none yet (atomically: two replicas starting
	// at once end with the same pair).
	VAPIDKeys(ctx context.Context, generate func() (VAPIDKeys, error)) (VAPIDKeys, error)
}

// Store is everything the gateway keeps. Close flushes and releases it; every
// call after Close returns ErrClosed, and Close is idempotent.
type Store interface {
	Log
	Registry
	Delivery
	Keys
	io.Closer
}

// Notice is news one gateway replica sends the others (proxy's Bus): the
// stream Stream grew, or the device Device was registered, changed or
// deleted. One of the two is set.
type Notice struct {
	Stream string `json:"stream,omitempty"`
	Device string `json:"device,omitempty"`
}

// CursorUpdate is one cursor of a SetCursors batch.
type CursorUpdate struct {
	Device, Upstream string
	Pos              uint64
}

// CursorBatcher is an optional power of a store, found by type assertion:
// SetCursors records many cursors in one write (one commit, one round
// trip), each with SetCursor's rules, except that an update for a device
// or upstream that no longer exists is skipped rather than an error. The
// gateway flushes the cursors of thousands of live devices with it.
type CursorBatcher interface {
	SetCursors(ctx context.Context, updates []CursorUpdate) error
}
