package upstream_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/wakeline/wakeline/upstream"
)

// msg is a dispatched event of type "message" without an id field.
func msg(data, last string) upstream.Event {
	return upstream.Event{Type: "message", Data: data, LastEventID: last}
}

// withID is a dispatched event of type "message" with its own id field.
func withID(data, id string) upstream.Event {
	return upstream.Event{Type: "message", Data: data, ID: id, HasID: true, LastEventID: id}
}

// decodeAll reads every event from r.
func decodeAll(r io.Reader, maxSize int) (*upstream.Decoder, []upstream.Event, error) {
	d := upstream.NewDecoder(r)
	d.MaxSize = maxSize
	var evs []upstream.Event
	for {
		ev, err := d.Next()
		if err != nil {
			return d, evs, err
		}
		evs = append(evs, ev)
	}
}

// chunkings returns readers that deliver in in different pieces: a
// streaming parser must give the same answer however the bytes arrive.
func chunkings(in string) map[string]func() io.Reader {
	m := map[string]func() io.Reader{
		"whole":      func() io.Reader { return strings.NewReader(in) },
		"byte":       func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"data+eof":   func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
		"half+bytes": func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	}
	for i := 1; i < len(in) && len(in) < 80; i++ {
		m[fmt.Sprintf("split%d", i)] = func() io.Reader {
			return io.MultiReader(strings.NewReader(in[:i]), strings.NewReader(in[i:]))
		}
	}
	return m
}

type decodeCase struct {
	name      string
	in        string
	want      []upstream.Event
	wantLast  string        // LastEventID() at the end
	wantRetry time.Duration // -1: no valid retry field
}

// decodeCases quote the rule of the HTML standard ("Interpreting an event
// stream", "Dispatch the event") each one checks.
var decodeCases = []decodeCase{
	// "data: YHOO / data: +2 / data: 10 ... would cause an event message ...
	// The event's data attribute would contain the string YHOO\n+2\n10"
	{"spec example: stock ticker", "data: YHOO\ndata: +2\ndata: 10\n\n",
		[]upstream.Event{msg("YHOO\n+2\n10", "")}, "", -1},
	// "The following stream contains four blocks. The first block has just a
	// comment, and will fire nothing. The second block has two fields with
	// names data and id respectively; an event will be fired for this block,
	// with the data first event, and will then set the last event ID to 1 ...
	// The third block fires an event with data second event, and also has an
	// id field, this time with no value, which resets the last event ID to
	// the empty string ... The last block just fires ... " - the last block
	// has no blank line after it, so it is discarded at the end.
	{"spec example: four blocks", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
		[]upstream.Event{withID("first event", "1"), withID("second event", "")}, "", -1},
	// "The following stream fires two events: data / (blank) / data / data /
	// (blank) / data: ... The first block fires events with the data set to
	// the empty string, as would the last block if it was followed by a
	// blank line. The middle block fires an event with the data set to a
	// single newline character."
	{"spec example: empty data fields", "data\n\ndata\ndata\n\ndata:",
		[]upstream.Event{msg("", ""), msg("\n", "")}, "", -1},
	// "The following stream fires two identical events: data:test / (blank) /
	// data: test ... This is because the space after the colon is ignored if
	// present."
	{"spec example: space after colon", "data:test\n\ndata: test\n\n",
		[]upstream.Event{msg("test", ""), msg("test", "")}, "", -1},

	// "One leading U+FEFF BYTE ORDER MARK character must be ignored if any
	// are present."
	{"leading BOM stripped", "\uFEFFdata: 1\n\n", []upstream.Event{msg("1", "")}, "", -1},
	{"only one BOM stripped", "\uFEFF\uFEFFdata: 1\n\ndata: 2\n\n", []upstream.Event{msg("2", "")}, "", -1},
	{"BOM after the start is data", "data: 1\n\n\uFEFFdata: 2\n\n", []upstream.Event{msg("1", "")}, "", -1},
	{"BOM inside a value kept", "data: \uFEFFx\n\n", []upstream.Event{msg("\uFEFFx", "")}, "", -1},
	{"half a BOM is not a BOM", "\xEF\xBBdata: 1\n\ndata: 2\n\n", []upstream.Event{msg("2", "")}, "", -1},

	// "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE
	// FEED (CRLF) character pair, a single U+000A LINE FEED (LF) character,
	// or a single U+000D CARRIAGE RETURN (CR) character."
	{"CRLF", "data: a\r\ndata: b\r\n\r\n", []upstream.Event{msg("a\nb", "")}, "", -1},
	{"lone CR", "data: a\rdata: b\r\rdata: c\r\r", []upstream.Event{msg("a\nb", ""), msg("c", "")}, "", -1},
	{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []upstream.Event{msg("a\nb\nc", "")}, "", -1},
	{"LF then CR is two line ends", "data: a\n\rdata: b\n\n", []upstream.Event{msg("a", ""), msg("b", "")}, "", -1},
	{"CR CR LF is two line ends", "data: a\r\r\ndata: b\n\n", []upstream.Event{msg("a", ""), msg("b", "")}, "", -1},
	{"CR ending the stream ends a line", "data: a\r\r", []upstream.Event{msg("a", "")}, "", -1},

	// "If the line is empty (a blank line): Dispatch the event."
	// "If the line starts with a U+003A COLON character (:): Ignore the line."
	{"comments ignored", ":c1\ndata: a\n: c2\n:\n\n: alone\n\n", []upstream.Event{msg("a", "")}, "", -1},
	{"blank lines alone fire nothing", "\n\n\r\n\r\r", nil, "", -1},
	// "If the line contains a U+003A COLON character (:) Collect the
	// characters on the line before the first U+003A COLON character (:), and
	// let field be that string. Collect the characters on the line after the
	// first U+003A COLON character (:), and let value be that string. If value
	// starts with a U+0020 SPACE character, remove it from value."
	{"value after the first colon", "data: a:b\ndata:: c\n\n", []upstream.Event{msg("a:b\n: c", "")}, "", -1},
	{"only one leading space stripped", "data:  two\n\n", []upstream.Event{msg(" two", "")}, "", -1},
	{"tab is not stripped", "data:\ttab\n\n", []upstream.Event{msg("\ttab", "")}, "", -1},
	{"trailing space kept", "data: x \n\n", []upstream.Event{msg("x ", "")}, "", -1},
	{"space only value is empty", "data: \n\n", []upstream.Event{msg("", "")}, "", -1},
	// "Otherwise, the string is not empty but does not contain a U+003A COLON
	// character (:) Process the field using the steps described below, using
	// the whole line as the field name, and the empty string as the field
	// value."
	{"line without colon is a field with empty value", "data\ndata: x\n\n", []upstream.Event{msg("\nx", "")}, "", -1},
	{"event without colon resets type", "event\ndata: x\n\n", []upstream.Event{msg("x", "")}, "", -1},
	// "If the field name is ... Otherwise: The field is ignored." Field names
	// are compared as exact strings.
	{"field names are case-sensitive", "Data: x\n\nDATA: y\n\nID: 3\ndata: z\n\n", []upstream.Event{msg("z", "")}, "", -1},
	{"unknown fields ignored", "foo: bar\ndata: x\nbaz\n\n", []upstream.Event{msg("x", "")}, "", -1},
	{"leading space makes a different field", " data: x\n\n", nil, "", -1},
	{"field name with trailing space", "data : x\n\n", nil, "", -1},

	// "If the field name is "data": Append the field value to the data
	// buffer, then append a single U+000A LINE FEED (LF) character to the
	// data buffer." ... "If the data buffer's last character is a U+000A LINE
	// FEED (LF) character, then remove the last character from the data
	// buffer."
	{"only one trailing LF removed", "data: a\ndata:\n\n", []upstream.Event{msg("a\n", "")}, "", -1},
	{"NUL in data kept", "data: a\x00b\n\n", []upstream.Event{msg("a\x00b", "")}, "", -1},
	// "If the data buffer is an empty string, set the data buffer and the
	// event type buffer to the empty string and return."
	{"block without data fires nothing", "event: x\n\nid\n\n: c\n\n", nil, "", -1},

	// "If the field name is "event": Set the event type buffer to field
	// value." ... "If the event type buffer has a value other than the empty
	// string, change the type of the newly created event to equal the value
	// of the event type buffer." ... "Set the data buffer and the event type
	// buffer to the empty string."
	{"event type", "event: add\ndata: x\n\n",
		[]upstream.Event{{Type: "add", Data: "x"}}, "", -1},
	{"event type reset after dispatch", "event: add\ndata: x\n\ndata: y\n\n",
		[]upstream.Event{{Type: "add", Data: "x"}, msg("y", "")}, "", -1},
	{"event type reset by a block without data", "event: add\n\ndata: y\n\n", []upstream.Event{msg("y", "")}, "", -1},
	{"empty event type is message", "event:\ndata: x\n\nevent: \ndata: y\n\n", []upstream.Event{msg("x", ""), msg("y", "")}, "", -1},
	{"last event field wins", "event: a\nevent: b\ndata: x\n\n", []upstream.Event{{Type: "b", Data: "x"}}, "", -1},
	{"repeated type", "event: t\ndata: 1\n\nevent: t\ndata: 2\n\nevent: u\ndata: 3\n\n",
		[]upstream.Event{{Type: "t", Data: "1"}, {Type: "t", Data: "2"}, {Type: "u", Data: "3"}}, "", -1},

	// "If the field name is "id": If the field value does not contain U+0000
	// NULL, then set the last event ID buffer to the field value. Otherwise,
	// ignore the field." ... "Set the last event ID string of the event
	// source to the value of the last event ID buffer. The buffer does not
	// get reset, so the last event ID string of the event source remains set
	// to this value until the next time it is set by the server."
	{"id kept for later events", "id: 1\ndata: a\n\ndata: b\n\n",
		[]upstream.Event{withID("a", "1"), msg("b", "1")}, "1", -1},
	{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\ndata: c\n\nid:\ndata: d\n\n",
		[]upstream.Event{withID("a", "1"), withID("b", ""), msg("c", ""), withID("d", "")}, "", -1},
	{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
		[]upstream.Event{withID("a", "1"), msg("b", "1")}, "1", -1},
	{"id with a leading space", "id:  5\ndata: x\n\n", []upstream.Event{withID("x", " 5")}, " 5", -1},
	{"last id field wins", "id: 1\nid: 2\ndata: x\n\n", []upstream.Event{withID("x", "2")}, "2", -1},
	{"id after data in the block", "data: x\nid: 3\n\n", []upstream.Event{withID("x", "3")}, "3", -1},
	{"id in a block without data still sets the last id", "id: 7\n\ndata: x\n\n", []upstream.Event{msg("x", "7")}, "7", -1},
	{"id only block at the end", "data: x\n\nid: 8\n\n", []upstream.Event{msg("x", "")}, "8", -1},

	// "If the field name is "retry": If the field value consists of only
	// ASCII digits, then interpret the field value as an integer in base ten,
	// and set the event stream's reconnection time to that integer.
	// Otherwise, ignore the field."
	{"retry", "retry: 3000\n", nil, "", 3 * time.Second},
	{"retry zero", "retry: 0\n", nil, "", 0},
	{"bad retry ignored", "retry: 3000\nretry: 1000x\nretry: -1\nretry: 1.5\nretry:  100\nretry: \u0663\nretry\nretry:\n", nil, "", 3 * time.Second},
	{"huge retry saturates", "retry: 99999999999999999999999999\n", nil, "", time.Duration(1<<63 - 1)},
	{"retry needs no blank line", "retry: 5\ndata: x", nil, "", 5 * time.Millisecond},

	// "Once the end of the file is reached, any pending data must be
	// discarded. (If the file ends in the middle of an event, before the
	// final empty line, the incomplete event is not dispatched.)"
	{"incomplete event discarded", "data: a\n\ndata: b\n", []upstream.Event{msg("a", "")}, "", -1},
	{"unterminated line discarded", "data: a\n\ndata: b", []upstream.Event{msg("a", "")}, "", -1},
	{"id of an incomplete event not kept", "data: a\n\nid: 9\ndata: b\n", []upstream.Event{msg("a", "")}, "", -1},

	// "Streams must be decoded using the UTF-8 decode algorithm." - with
	// replacement: each maximal ill-formed subpart becomes one U+FFFD.
	{"unicode", "data: héllo ✓ 😀 日本\n\n", []upstream.Event{msg("héllo ✓ 😀 日本", "")}, "", -1},
	{"invalid byte replaced", "data: a\xffb\n\n", []upstream.Event{msg("a\uFFFDb", "")}, "", -1},
	{"surrogate bytes replaced one by one", "data: \xed\xa0\x80\n\n", []upstream.Event{msg("\uFFFD\uFFFD\uFFFD", "")}, "", -1},
	{"truncated sequence is one replacement", "data: \xe2\x82x\n\n", []upstream.Event{msg("\uFFFDx", "")}, "", -1},
	{"truncated 4-byte sequence before LF", "data: \xf0\x9f\x98\ndata: y\n\n", []upstream.Event{msg("\uFFFD\ny", "")}, "", -1},
	{"overlong encoding", "data: \xc0\xaf\n\n", []upstream.Event{msg("\uFFFD\uFFFD", "")}, "", -1},
	{"U+FFFD itself kept", "data: \uFFFD\n\n", []upstream.Event{msg("\uFFFD", "")}, "", -1},
	{"invalid type and id replaced", "event: \xff\nid: \xfe\ndata: x\n\n",
		[]upstream.Event{{Type: "\uFFFD", Data: "x", ID: "\uFFFD", HasID: true, LastEventID: "\uFFFD"}}, "\uFFFD", -1},
}

func TestDecoderRules(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			for how, r := range chunkings(tc.in) {
				d, got, err := decodeAll(r(), 0)
				if err != io.EOF {
					t.Fatalf("%s: err = %v, want io.EOF", how, err)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("%s: events\n got %#v\nwant %#v", how, got, tc.want)
				}
				if last := d.LastEventID(); last != tc.wantLast {
					t.Errorf("%s: LastEventID() = %q, want %q", how, last, tc.wantLast)
				}
				retry, ok := d.Retry()
				if tc.wantRetry < 0 && ok {
					t.Errorf("%s: Retry() = %v, want none", how, retry)
				}
				if tc.wantRetry >= 0 && (!ok || retry != tc.wantRetry) {
					t.Errorf("%s: Retry() = %v, %v; want %v", how, retry, ok, tc.wantRetry)
				}
			}
		})
	}
}

// A line ended by a CR is processed at once, before the next byte arrives:
// a live stream must not wait for a LF that may never come.
func TestDecoderDoesNotWaitAfterCR(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		_, _ = pw.Write([]byte("data: now\r\r"))
		// Nothing more is written until the event has been read.
	}()
	d := upstream.NewDecoder(pr)
	ev, err := d.Next()
	if err != nil || ev.Data != "now" {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
	pw.Close()
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after close: %v", err)
	}
}

func TestDecoderSetLastEventID(t *testing.T) {
	d := upstream.NewDecoder(strings.NewReader("data: a\n\nid: 6\ndata: b\n\n"))
	d.SetLastEventID("5")
	if got := d.LastEventID(); got != "5" {
		t.Fatalf("LastEventID() = %q", got)
	}
	ev, _ := d.Next()
	if ev != msg("a", "5") {
		t.Fatalf("first = %+v", ev)
	}
	ev, _ = d.Next()
	if ev != withID("b", "6") {
		t.Fatalf("second = %+v", ev)
	}
}

func TestDecoderMaxSize(t *testing.T) {
	const max = 64
	line := strings.Repeat("x", max-len("data: "))
	tests := []struct {
		name    string
		in      string
		wantErr error
		events  int
	}{
		{"line at the limit", "data: " + line + "\n\n", io.EOF, 1},
		{"line at the limit with CRLF", "data: " + line + "\r\n\r\n", io.EOF, 1},
		{"line over the limit", "data: " + line + "y\n\n", upstream.ErrTooLarge, 0},
		{"comment over the limit", ":" + strings.Repeat("c", max) + "\n", upstream.ErrTooLarge, 0},
		{"unterminated line over the limit", "data: ok\n\n" + strings.Repeat("z", 3*max), upstream.ErrTooLarge, 1},
		{"data at the limit", "data: " + strings.Repeat("d", 31) + "\ndata: " + strings.Repeat("d", 32) + "\n\n", io.EOF, 1},
		{"data over the limit", "data: " + strings.Repeat("d", 32) + "\ndata: " + strings.Repeat("d", 32) + "\n\n", upstream.ErrTooLarge, 0},
		{"many small lines over the limit", strings.Repeat("data: ab\n", 40) + "\n", upstream.ErrTooLarge, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for how, r := range chunkings(tc.in) {
				d, got, err := decodeAll(r(), max)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%s: err = %v, want %v", how, err, tc.wantErr)
				}
				if len(got) != tc.events {
					t.Fatalf("%s: %d events, want %d", how, len(got), tc.events)
				}
				if _, again := d.Next(); !errors.Is(again, tc.wantErr) {
					t.Fatalf("%s: error not sticky: %v", how, again)
				}
			}
		})
	}
}

// endless is a reader that never sends a line terminator.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.read += len(p)
	return len(p), nil
}

// An origin that never ends its line costs at most MaxSize plus a read.
func TestDecoderBoundedOnEndlessLine(t *testing.T) {
	for _, max := range []int{100, 4096, 1 << 20} {
		src := &endless{}
		d := upstream.NewDecoder(src)
		d.MaxSize = max
		if _, err := d.Next(); !errors.Is(err, upstream.ErrTooLarge) {
			t.Fatalf("max %d: err = %v", max, err)
		}
		if src.read > 2*max+64<<10 {
			t.Fatalf("max %d: read %d bytes before giving up", max, src.read)
		}
	}
}

func TestDecoderDefaultMaxSize(t *testing.T) {
	in := "data: " + strings.Repeat("x", upstream.DefaultMaxSize) + "\n\n"
	if _, _, err := decodeAll(strings.NewReader(in), 0); !errors.Is(err, upstream.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	in = "data: " + strings.Repeat("x", upstream.DefaultMaxSize-10) + "\n\n"
	if _, evs, err := decodeAll(strings.NewReader(in), 0); err != io.EOF || len(evs) != 1 {
		t.Fatalf("err = %v, %d events", err, len(evs))
	}
}

func TestDecoderReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	d, got, err := decodeAll(r, 0)
	if err != boom {
		t.Fatalf("err = %v, want the reader's", err)
	}
	if !slices.Equal(got, []upstream.Event{msg("a", "")}) {
		t.Fatalf("events = %+v", got)
	}
	if _, err := d.Next(); err != boom {
		t.Fatalf("not sticky: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecoderNoProgress(t *testing.T) {
	if _, _, err := decodeAll(zeroReader{}, 0); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

// Long lines and many events in one buffer, across buffer growth.
func TestDecoderLargeStream(t *testing.T) {
	var in bytes.Buffer
	var want []upstream.Event
	for i := range 300 {
		data := strings.Repeat(fmt.Sprintf("%d,", i), i*7)
		fmt.Fprintf(&in, "id: %d\r\nevent: e%d\r\ndata: %s\r\n: pad\r\n\r\n", i, i%3, data)
		want = append(want, upstream.Event{Type: fmt.Sprintf("e%d", i%3), Data: data, ID: fmt.Sprint(i), HasID: true, LastEventID: fmt.Sprint(i)})
	}
	for how, r := range map[string]io.Reader{
		"whole": bytes.NewReader(in.Bytes()),
		"byte":  iotest.OneByteReader(bytes.NewReader(in.Bytes())),
		"half":  iotest.HalfReader(bytes.NewReader(in.Bytes())),
	} {
		_, got, err := decodeAll(r, 0)
		if err != io.EOF || !slices.Equal(got, want) {
			t.Fatalf("%s: err %v, %d events, equal %v", how, err, len(got), slices.Equal(got, want))
		}
	}
}
