package upstream_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wakeline/wakeline/upstream"
)

func TestEncoderOutput(t *testing.T) {
	var b bytes.Buffer
	e := upstream.NewEncoder(&b)
	steps := []func() error{
		func() error { return e.Encode(upstream.Event{Type: "message", Data: "plain"}) },
		func() error { return e.Encode(upstream.Event{Type: "add", Data: "a\nb", ID: "7", HasID: true}) },
		func() error { return e.Encode(upstream.Event{Data: "", ID: "", HasID: true}) },
		func() error { return e.Encode(upstream.Event{Data: "x\r\ny\rz\n"}) },
		func() error { return e.Retry(2500 * time.Millisecond) },
		func() error { return e.Retry(-time.Second) },
		func() error { return e.Comment("ping") },
		func() error { return e.Comment("two\nlines\r\ndata: evil") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := "data: plain\n\n" +
		"id: 7\nevent: add\ndata: a\ndata: b\n\n" +
		"id: \ndata: \n\n" +
		"data: x\ndata: y\ndata: z\ndata: \n\n" +
		"retry: 2500\n\n" +
		"retry: 0\n\n" +
		": ping\n\n" +
		": two\n: lines\n: data: evil\n\n"
	if got := b.String(); got != want {
		t.Fatalf("wrote\n%q\nwant\n%q", got, want)
	}
}

func TestEncoderRejectsUnencodable(t *testing.T) {
	for _, ev := range []upstream.Event{
		{Data: "x", ID: "a\nb", HasID: true},
		{Data: "x", ID: "a\rb", HasID: true},
		{Data: "x", ID: "a\x00b", HasID: true},
		{Data: "x", Type: "a\nb"},
		{Data: "x", Type: "a\rb"},
	} {
		var b bytes.Buffer
		err := upstream.NewEncoder(&b).Encode(ev)
		if !errors.Is(err, upstream.ErrUnencodable) {
			t.Errorf("Encode(%#v) = %v, want ErrUnencodable", ev, err)
		}
		if b.Len() != 0 {
			t.Errorf("Encode(%#v) wrote %q", ev, b.String())
		}
	}
	// An id that is not sent is not checked.
	var b bytes.Buffer
	if err := upstream.NewEncoder(&b).Encode(upstream.Event{Data: "x", ID: "a\nb"}); err != nil {
		t.Errorf("id without HasID: %v", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestEncoderWriteError(t *testing.T) {
	boom := errors.New("boom")
	e := upstream.NewEncoder(failWriter{boom})
	for name, err := range map[string]error{
		"Encode":  e.Encode(upstream.Event{Data: "x"}),
		"Retry":   e.Retry(time.Second),
		"Comment": e.Comment("x"),
	} {
		if !errors.Is(err, boom) {
			t.Errorf("%s: err = %v, want the writer's", name, err)
		}
	}
}

// countWriter counts Write calls.
type countWriter struct {
	bytes.Buffer
	writes int
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// Each call is one Write: a flushing writer never leaves half an event.
func TestEncoderOneWritePerCall(t *testing.T) {
	var w countWriter
	e := upstream.NewEncoder(&w)
	_ = e.Encode(upstream.Event{Type: "t", Data: "a\nb\nc", ID: "1", HasID: true})
	_ = e.Comment("a\nb")
	_ = e.Retry(time.Second)
	if w.writes != 3 {
		t.Fatalf("%d writes for 3 calls", w.writes)
	}
}

// The hard cases of the round trip, kept as a plain test so that they run
// on every `go test`, not only when fuzzing.
func TestEncoderRoundTrip(t *testing.T) {
	for _, c := range roundTripSeeds {
		checkRoundTrip(t, c.typ, c.data, c.id, c.hasID, c.comment)
	}
}

// Comments cannot carry fields, whatever their text.
func TestEncoderCommentCannotInject(t *testing.T) {
	var b bytes.Buffer
	e := upstream.NewEncoder(&b)
	for _, text := range []string{"\ndata: x\n", "\rdata: x\r", "\r\ndata: x\r\n\r\n", "x\n\ndata: y", "\n\n\n"} {
		if err := e.Comment(text); err != nil {
			t.Fatal(err)
		}
	}
	d := upstream.NewDecoder(&b)
	if ev, err := d.Next(); err != io.EOF {
		t.Fatalf("comments decoded to %#v, %v", ev, err)
	}
}

// Events the decoder produced re-encode to a stream that decodes to the
// same events, with their LastEventID too.
func TestEncoderReencodesDecodedEvents(t *testing.T) {
	for _, tc := range decodeCases {
		_, evs, _ := decodeAll(strings.NewReader(tc.in), 0)
		var b bytes.Buffer
		e := upstream.NewEncoder(&b)
		for _, ev := range evs {
			if err := e.Encode(ev); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		_, again, _ := decodeAll(&b, 0)
		if !slices.EqualFunc(again, evs, sameEncoded) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, again, evs)
		}
	}
}

// sameEncoded compares what an Encoder carries: LastEventID of an event
// without its own id depends on blocks the Encoder never sees (an id-only
// block, say).
func sameEncoded(a, b upstream.Event) bool {
	a.LastEventID, b.LastEventID = "", ""
	return a == b
}
