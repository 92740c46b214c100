package bolt

import (
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
)

// FuzzEventRecord: any event survives encoding, and no byte string makes
// the decoder panic or read outside the record.
func FuzzEventRecord(f *testing.F) {
	f.Add("42", true, "message", "hello\nworld", int64(1), []byte{})
	f.Add("", false, "", "", int64(-1), []byte{eventV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Add("x", true, "t", "d", int64(0), appendEvent(nil, &store.Event{ID: "id", HasID: true, Type: "t", Data: "d"}))
	f.Fuzz(func(t *testing.T, id string, hasID bool, typ, data string, ns int64, raw []byte) {
		in := store.Event{ID: id, HasID: hasID, Type: typ, Data: data, Received: time.Unix(0, ns)}
		r, err := parseEvent(appendEvent(nil, &in))
		if err != nil {
			t.Fatalf("parse of an encoded event: %v", err)
		}
		var d pageDecoder
		d.add(7, r)
		if out := d.events()[0]; out.Pos != 7 || !sameEvent(in, out) {
			t.Fatalf("round trip: %+v, want %+v", out, in)
		}
		if r, err := parseEvent(raw); err == nil {
			d = pageDecoder{}
			d.add(1, r)
			_ = d.events()
		}
		_, _ = decodeHead(raw)
		_, _ = decodeDevice(raw)
	})
}

func sameEvent(a, b store.Event) bool {
	return a.ID == b.ID && a.HasID == b.HasID && a.Type == b.Type && a.Data == b.Data && a.Received.Equal(b.Received)
}
