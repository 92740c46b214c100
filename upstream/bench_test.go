package upstream_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/wakeline/wakeline/upstream"
)

// loopReader serves the same stream forever, so one benchmark op is one
// event and the decoder is made once.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// jsonEvent returns an event of about size bytes on the wire: an id, a
// type, and one line of JSON, like a typical API's stream.
func jsonEvent(i, size int) string {
	head := fmt.Sprintf("id: %d\nevent: update\ndata: ", 1000000+i)
	body := fmt.Sprintf(`{"seq":%d,"kind":"order.updated","payload":"`, i)
	pad := size - len(head) - len(body) - len(`"}`) - 2
	return head + body + strings.Repeat("x", max(pad, 0)) + `"}` + "\n\n"
}

func tinyEvent(i int) string {
	return fmt.Sprintf("id: %d\ndata: ok\n\n", i)
}

// benchDecode decodes b.N events from a stream of distinct events (distinct
// ids, so none of the decoder's string reuse applies to them).
func benchDecode(b *testing.B, event func(i int) string) {
	var stream bytes.Buffer
	const distinct = 1000
	for i := range distinct {
		stream.WriteString(event(i))
	}
	d := upstream.NewDecoder(&loopReader{data: stream.Bytes()})
	b.SetBytes(int64(stream.Len() / distinct))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode: one op is one dispatched event; allocs/op is allocations
// per event (the Data string and the ID string are one each).
func BenchmarkDecode(b *testing.B) {
	b.Run("json1KiB", func(b *testing.B) { benchDecode(b, func(i int) string { return jsonEvent(i, 1024) }) })
	b.Run("tiny", func(b *testing.B) { benchDecode(b, tinyEvent) })
	b.Run("json1KiB-CRLF", func(b *testing.B) {
		benchDecode(b, func(i int) string { return strings.ReplaceAll(jsonEvent(i, 1024), "\n", "\r\n") })
	})
	b.Run("multiline16x64B", func(b *testing.B) {
		benchDecode(b, func(i int) string {
			return fmt.Sprintf("id: %d\n", i) + strings.Repeat("data: "+strings.Repeat("y", 57)+"\n", 16) + "\n"
		})
	})
}

func BenchmarkEncode(b *testing.B) {
	ev := upstream.Event{Type: "update", Data: jsonEvent(1, 1024), ID: "1000001", HasID: true}
	e := upstream.NewEncoder(io.Discard)
	b.SetBytes(int64(len(ev.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
}
