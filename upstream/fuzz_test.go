package upstream_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/wakeline/wakeline/upstream"
)

type roundTripSeed struct {
	typ, data, id string
	hasID         bool
	comment       string
}

// roundTripSeeds are the hard cases for Encoder→Decoder.
var roundTripSeeds = []roundTripSeed{
	{"", "", "", false, ""},
	{"message", "plain", "1", true, "heartbeat"},
	{"", "", "", true, ""},
	{"t", "a\nb", "x", true, ""},
	{"", "a\rb", "", false, ""},
	{"", "a\r\nb", "", false, ""},
	{"", "\r\n\r\n", "", false, "\r\n"},
	{"", "\n", "", false, "\n"},
	{"", "\n\n\n", "", false, ""},
	{"", "trailing\n", "", false, ""},
	{"", "\r", "", false, "\r"},
	{"", "\n\r", "", false, ""},
	{" leading", " leading space", " id", true, " comment"},
	{"", "  two spaces", "  ", true, ""},
	{"", "\ttab", "\t", true, "\t"},
	{"nul\x00type", "nul\x00data", "", false, "nul\x00"},
	{"", "data: injected\n\nid: 9", "", false, "data: x\n\nevent: y"},
	{"", ":colon", ":", true, ":"},
	{"ünï", "héllo ✓ 😀 日本 \u2028 \uFEFF", "ïd😀", true, "ç"},
	{"", "\uFEFFbom first", "\uFEFF", true, "\uFEFF"},
	{"", "\xed\xa0\x80 lone surrogate", "\xed\xb0\x80", true, ""},
	{"\xff", "\xff\xfe", "\xc0\xaf", true, "\xff"},
	{"", "\xe2\x82", "\xf0\x9f\x98", true, ""},
	{"", "\xf0\x9f\x98\n\xe2\x82\r", "", false, ""},
	{"", "\xf4\x90\x80\x80 above U+10FFFF", "", false, ""},
	{"", "bad id", "a\nb", true, ""},
	{"", "bad id", "a\x00b", true, ""},
	{"a\nb", "bad type", "", false, ""},
	{"retry", "retry: 5", "retry", true, "retry: 5"},
	{"", strings.Repeat("long ", 5000), "", false, ""},
}

// whatwgUTF8 is an independent transcription of the Encoding standard's
// UTF-8 decoder (bytes needed/seen, lower/upper boundary) with replacement,
// used as the oracle for what a browser would read.
func whatwgUTF8(s string) string {
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(s); {
		b := s[i]
		if needed == 0 {
			switch {
			case b <= 0x7F:
				out.WriteByte(b)
			case b >= 0xC2 && b <= 0xDF:
				needed, cp = 1, rune(b&0x1F)
			case b >= 0xE0 && b <= 0xEF:
				if b == 0xE0 {
					lower = 0xA0
				} else if b == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(b&0xF)
			case b >= 0xF0 && b <= 0xF4:
				if b == 0xF0 {
					lower = 0x90
				} else if b == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(b&0x7)
			default:
				out.WriteRune(utf8.RuneError)
			}
			i++
			continue
		}
		if b < lower || b > upper {
			// Error, and the byte is processed again as a fresh start.
			cp, needed, seen, lower, upper = 0, 0, 0, 0x80, 0xBF
			out.WriteRune(utf8.RuneError)
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(b&0x3F)
		seen++
		i++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(utf8.RuneError)
	}
	return out.String()
}

// asRead is what any event-stream reader gets for data written as s: CR and
// CRLF end lines like LF, and ill-formed UTF-8 is replaced.
func asRead(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return whatwgUTF8(s)
}

// checkRoundTrip encodes an event twice around a comment and a retry and
// checks that decoding gives it back twice.
func checkRoundTrip(t *testing.T, typ, data, id string, hasID bool, comment string) {
	t.Helper()
	ev := upstream.Event{Type: typ, Data: data, ID: id, HasID: hasID}
	var b bytes.Buffer
	e := upstream.NewEncoder(&b)
	err := e.Encode(ev)
	badID := hasID && strings.ContainsAny(id, "\r\n\x00")
	if badID || strings.ContainsAny(typ, "\r\n") {
		if !errors.Is(err, upstream.ErrUnencodable) || b.Len() != 0 {
			t.Fatalf("Encode(%#v) = %v, wrote %q; want ErrUnencodable and nothing", ev, err, b.String())
		}
		return
	}
	if err != nil {
		t.Fatalf("Encode(%#v): %v", ev, err)
	}
	_ = e.Comment(comment)
	_ = e.Retry(1234 * time.Millisecond)
	_ = e.Encode(ev)

	want := upstream.Event{Type: "message", Data: asRead(data)}
	if typ != "" {
		want.Type = whatwgUTF8(typ)
	}
	if hasID {
		want.ID, want.HasID, want.LastEventID = whatwgUTF8(id), true, whatwgUTF8(id)
	}
	for how, r := range map[string]io.Reader{
		"whole": bytes.NewReader(b.Bytes()),
		"byte":  iotest.OneByteReader(bytes.NewReader(b.Bytes())),
	} {
		d, got, err := decodeAll(r, 1<<20)
		if err != io.EOF {
			t.Fatalf("%s: decode: %v", how, err)
		}
		if !slices.Equal(got, []upstream.Event{want, want}) {
			t.Fatalf("%s: round trip of %#v\nwrote %q\n  got %#v\n want %#v", how, ev, b.String(), got, want)
		}
		if rt, ok := d.Retry(); !ok || rt != 1234*time.Millisecond {
			t.Fatalf("%s: retry %v %v", how, rt, ok)
		}
	}
}

// FuzzRoundTrip: whatever event the gateway encodes, a reader decodes the
// same event (normalised only where no event stream can do better), and no
// comment text can inject a field.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range roundTripSeeds {
		f.Add(s.typ, s.data, s.id, s.hasID, s.comment)
	}
	f.Fuzz(checkRoundTrip)
}

// FuzzDecode: the decoder never panics, gives the same events however the
// bytes are split, produces only well-formed events, and allocates in
// proportion to its input.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("data: " + strings.Repeat("x", 5000) + "\n\n"))
	f.Add([]byte(strings.Repeat("data: ab\r", 1000) + "\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxSize = 4096
		_, whole, werr := decodeAll(bytes.NewReader(in), maxSize)
		_, bytewise, berr := decodeAll(iotest.OneByteReader(bytes.NewReader(in)), maxSize)
		if !slices.Equal(whole, bytewise) || !sameEnd(werr, berr) {
			t.Fatalf("chunking changed the result: %v/%v\n%#v\n%#v", werr, berr, whole, bytewise)
		}
		if werr != io.EOF && !errors.Is(werr, upstream.ErrTooLarge) {
			t.Fatalf("unexpected error %v", werr)
		}
		for _, ev := range whole {
			checkWellFormed(t, ev, maxSize)
		}
		// Decoded events re-encode to themselves.
		var b bytes.Buffer
		e := upstream.NewEncoder(&b)
		for _, ev := range whole {
			if err := e.Encode(ev); err != nil {
				t.Fatalf("re-encode %#v: %v", ev, err)
			}
		}
		if _, again, _ := decodeAll(&b, 0); !slices.EqualFunc(again, whole, sameEncoded) {
			t.Fatalf("re-encoded events differ:\n%#v\n%#v", again, whole)
		}
		checkAllocBound(t, in, maxSize)
	})
}

func sameEnd(a, b error) bool {
	return a == b || (errors.Is(a, upstream.ErrTooLarge) && errors.Is(b, upstream.ErrTooLarge))
}

func checkWellFormed(t *testing.T, ev upstream.Event, maxSize int) {
	t.Helper()
	switch {
	case ev.Type == "" || !utf8.ValidString(ev.Type) || strings.ContainsAny(ev.Type, "\r\n"):
		t.Fatalf("bad type %q", ev.Type)
	case !utf8.ValidString(ev.Data) || strings.Contains(ev.Data, "\r") || len(ev.Data) > 3*maxSize:
		t.Fatalf("bad data %q", ev.Data)
	case !utf8.ValidString(ev.ID) || strings.ContainsAny(ev.ID, "\r\n\x00"):
		t.Fatalf("bad id %q", ev.ID)
	case ev.HasID && ev.ID != ev.LastEventID:
		t.Fatalf("id %q but last id %q", ev.ID, ev.LastEventID)
	case !ev.HasID && ev.ID != "":
		t.Fatalf("id %q without HasID", ev.ID)
	}
}

// checkAllocBound decodes in once more and checks that the bytes allocated
// stay within a constant factor of the input plus the size limit: no input
// can make the decoder allocate without bound.
func checkAllocBound(t *testing.T, in []byte, maxSize int) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d := upstream.NewDecoder(bytes.NewReader(in))
	d.MaxSize = maxSize
	for {
		if _, err := d.Next(); err != nil {
			break
		}
	}
	runtime.ReadMemStats(&after)
	// Slack covers the buffers' growth steps and whatever the fuzzing
	// engine allocates meanwhile.
	limit := 16*uint64(len(in)) + 16*uint64(maxSize) + 256<<10
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes (limit %d)", len(in), got, limit)
	}
}
