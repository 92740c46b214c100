package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wakeline/wakeline/store"
)

// On-disk encodings. Event and head records start with a version byte, the
// device record carries "v", so that a later schema can tell old records
// from new ones without a full migration.

const (
	eventV1 = 1
	headV1  = 1

	flagHasID = 1 << 0

	// eventHeader is version, flags and the received time in nanoseconds.
	eventHeader = 1 + 1 + 8
)

// eventKey is stream, NUL, big-endian position: the events of a stream are
// adjacent and sorted by position, and the streams' tails are apart from
// each other. Names never contain NUL (store.CheckName), so no stream's
// keys fall inside another's range.
func eventKey(stream []byte, pos uint64) []byte {
	k := make([]byte, 0, len(stream)+9)
	k = append(k, stream...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, pos)
}

// isEventKey reports whether k is the key of stream's event at pos.
func isEventKey(k, stream []byte, pos uint64) bool {
	n := len(stream)
	return len(k) == n+9 && k[n] == 0 && bytes.Equal(k[:n], stream) &&
		binary.BigEndian.Uint64(k[n+1:]) == pos
}

func encodedEventLen(e *store.Event) int {
	return eventHeader + binary.MaxVarintLen64*2 + len(e.ID) + len(e.Type) + len(e.Data)
}

// appendEvent encodes e (without its position, which is the key):
// version, flags, received ns, uvarint len + id, uvarint len + type, data.
func appendEvent(b []byte, e *store.Event) []byte {
	var flags byte
	if e.HasID {
		flags |= flagHasID
	}
	b = append(b, eventV1, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Received.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(e.ID)))
	b = append(b, e.ID...)
	b = binary.AppendUvarint(b, uint64(len(e.Type)))
	b = append(b, e.Type...)
	return append(b, e.Data...)
}

// rawEvent is an encoded event split into its parts, still pointing into
// the bbolt page it was read from.
type rawEvent struct {
	hasID    bool
	received int64
	id, typ  []byte
	data     []byte
}

func parseEvent(v []byte) (rawEvent, error) {
	var r rawEvent
	if len(v) < eventHeader || v[0] != eventV1 {
		return r, fmt.Errorf("bolt: bad event record: %w", store.ErrNotAStore)
	}
	r.hasID = v[1]&flagHasID != 0
	r.received = int64(binary.BigEndian.Uint64(v[2:10]))
	rest := v[eventHeader:]
	var ok bool
	if r.id, rest, ok = cutVarBytes(rest); !ok {
		return r, fmt.Errorf("bolt: bad event id: %w", store.ErrNotAStore)
	}
	if r.typ, rest, ok = cutVarBytes(rest); !ok {
		return r, fmt.Errorf("bolt: bad event type: %w", store.ErrNotAStore)
	}
	r.data = rest
	return r, nil
}

func cutVarBytes(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// pageDecoder turns the raw events of one page into store.Events with a
// single string allocation for all their texts: the page's bytes are copied
// once into a strings.Builder and every field is a substring of it.
type pageDecoder struct {
	raws []rawEvent
	poss []uint64
	size int
}

func (d *pageDecoder) add(pos uint64, r rawEvent) {
	d.raws = append(d.raws, r)
	d.poss = append(d.poss, pos)
	d.size += len(r.id) + len(r.typ) + len(r.data)
}

func (d *pageDecoder) events() []store.Event {
	if len(d.raws) == 0 {
		return nil
	}
	var sb strings.Builder
	sb.Grow(d.size)
	for i := range d.raws {
		sb.Write(d.raws[i].id)
		sb.Write(d.raws[i].typ)
		sb.Write(d.raws[i].data)
	}
	all := sb.String()
	out := make([]store.Event, len(d.raws))
	off := 0
	cut := func(n int) string { s := all[off : off+n]; off += n; return s }
	for i, r := range d.raws {
		out[i] = store.Event{
			Pos:      d.poss[i],
			HasID:    r.hasID,
			ID:       cut(len(r.id)),
			Type:     cut(len(r.typ)),
			Data:     cut(len(r.data)),
			Received: time.Unix(0, r.received),
		}
	}
	return out
}

// head is a stream's meta record. It outlives the stream's log so that
// positions are never reused: deleting a stream keeps last and clears the
// rest.
type head struct {
	last     uint64 // newest position ever assigned
	oldest   uint64 // oldest kept position, 0 when the log is empty
	resumeID string
}

func (h head) encode() []byte {
	b := make([]byte, 0, 1+16+len(h.resumeID))
	b = append(b, headV1)
	b = binary.BigEndian.AppendUint64(b, h.last)
	b = binary.BigEndian.AppendUint64(b, h.oldest)
	return append(b, h.resumeID...)
}

func decodeHead(v []byte) (head, error) {
	if v == nil {
		return head{}, nil
	}
	if len(v) < 17 || v[0] != headV1 {
		return head{}, fmt.Errorf("bolt: bad stream head record: %w", store.ErrNotAStore)
	}
	return head{
		last:     binary.BigEndian.Uint64(v[1:9]),
		oldest:   binary.BigEndian.Uint64(v[9:17]),
		resumeID: string(v[17:]),
	}, nil
}

// deviceRecord is the stored form of a store.Device. It has its own field
// names so that renaming a Go field never silently drops stored data.
type deviceRecord struct {
	V             int         `json:"v"`
	ID            string      `json:"id"`
	TokenHash     []byte      `json:"token_hash"`
	Endpoint      string      `json:"endpoint"`
	P256dh        string      `json:"p256dh"`
	Auth          string      `json:"auth"`
	PushStatus    string      `json:"push_status"`
	LastPushAt    time.Time   `json:"last_push_at"`
	LastError     string      `json:"last_error"`
	Subscriptions []subRecord `json:"subscriptions"`
	CreatedAt     time.Time   `json:"created_at"`
}

type subRecord struct {
	Upstream string            `json:"upstream"`
	Stream   string            `json:"stream"`
	Headers  map[string]string `json:"headers,omitempty"`
}

func encodeDevice(d *store.Device) ([]byte, error) {
	r := deviceRecord{
		V: 1, ID: d.ID, TokenHash: d.TokenHash,
		Endpoint: d.Push.Endpoint, P256dh: d.Push.Keys.P256dh, Auth: d.Push.Keys.Auth,
		PushStatus: d.PushState.Status, LastPushAt: d.PushState.LastPushAt, LastError: d.PushState.LastError,
		CreatedAt: d.CreatedAt,
	}
	for _, s := range d.Subscriptions {
		r.Subscriptions = append(r.Subscriptions, subRecord{Upstream: s.Upstream, Stream: s.Stream, Headers: s.Headers})
	}
	return json.Marshal(r)
}

func decodeDevice(v []byte) (store.Device, error) {
	var r deviceRecord
	if err := json.Unmarshal(v, &r); err != nil || r.V != 1 {
		return store.Device{}, fmt.Errorf("bolt: bad device record (version %d): %w", r.V, store.ErrNotAStore)
	}
	d := store.Device{
		ID: r.ID, TokenHash: r.TokenHash,
		PushState: store.PushState{Status: r.PushStatus, LastPushAt: r.LastPushAt, LastError: r.LastError},
		CreatedAt: r.CreatedAt,
	}
	d.Push.Endpoint, d.Push.Keys.P256dh, d.Push.Keys.Auth = r.Endpoint, r.P256dh, r.Auth
	for _, s := range r.Subscriptions {
		d.Subscriptions = append(d.Subscriptions, store.Subscription{Upstream: s.Upstream, Stream: s.Stream, Headers: s.Headers})
	}
	return d, nil
}

// subKey is the key of the index of devices by stream: stream, NUL, device
// id. Names never contain NUL (store.CheckName).
func subKey(stream, device string) []byte {
	k := make([]byte, 0, len(stream)+1+len(device))
	k = append(k, stream...)
	k = append(k, 0)
	return append(k, device...)
}

// Keys inside a device's bucket: its record, and per upstream its stream,
// cursor and outstanding wake.
var keyRecord = []byte("r")

func devKey(kind byte, upstream string) []byte {
	return append([]byte{kind}, upstream...)
}

// kindStream prefixes the key of a device's stream for an upstream in its
// bucket.
const kindStream = 's'

func u64(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64Bytes(n uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n) }
