package upstream

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// maxKeptEncodeBuffer is the largest scratch buffer an Encoder keeps between
// calls; a device stream that once carried a huge event does not hold that
// much memory for the rest of its life.
const maxKeptEncodeBuffer = 64 << 10

// Encoder writes an event stream. Decoding what it writes gives back the
// events it was given: Type ("" reads back as "message"), Data, ID and
// HasID, for any data, including empty lines, leading spaces, NUL and any
// Unicode. Two things no event stream can carry are normalised the way every
// reader would see them anyway: CR and CRLF in data end a line like LF, so
// they read back as LF, and ill-formed UTF-8 reads back with U+FFFD.
//
// Each call makes one Write of whole lines, so a writer that flushes after
// each call never leaves half an event on the wire. An Encoder is not safe
// for concurrent use.
type Encoder struct {
	w   io.Writer
	buf []byte
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	return &Encoder{w: w}
}

// Encode writes ev: its id field (only when HasID), its event field (left
// out for "message" and ""), one data field per line of Data, and the blank
// line that dispatches it. An ID holding CR, LF or NUL, or a Type holding CR
// or LF, cannot be carried; Encode then writes nothing and returns an error
// wrapping ErrUnencodable.
func (e *Encoder) Encode(ev Event) error {
	if ev.HasID && strings.ContainsAny(ev.ID, "\r\n\x00") {
		return fmt.Errorf("upstream: id %q holds CR, LF or NUL: %w", ev.ID, ErrUnencodable)
	}
	if strings.ContainsAny(ev.Type, "\r\n") {
		return fmt.Errorf("upstream: event type %q holds CR or LF: %w", ev.Type, ErrUnencodable)
	}
	b := e.buf[:0]
	if ev.HasID {
		b = appendField(b, "id: ", ev.ID)
	}
	if ev.Type != "" && ev.Type != defaultType {
		b = appendField(b, "event: ", ev.Type)
	}
	b = appendLines(b, "data: ", ev.Data)
	b = append(b, '\n')
	return e.write(b)
}

// Retry writes a retry field telling the reader to wait d before it
// reconnects. Negative durations are written as 0.
func (e *Encoder) Retry(d time.Duration) error {
	b := append(e.buf[:0], "retry: "...)
	b = strconv.AppendInt(b, max(d.Milliseconds(), 0), 10)
	b = append(b, "\n\n"...)
	return e.write(b)
}

// Comment writes text as comment lines followed by a blank line (a
// heartbeat, typically). Every line of a multi-line text gets its own colon,
// so no text can inject a field; the blank line dispatches nothing because
// Encode always ends its own events.
func (e *Encoder) Comment(text string) error {
	b := appendLines(e.buf[:0], ": ", text)
	b = append(b, '\n')
	return e.write(b)
}

func (e *Encoder) write(b []byte) error {
	_, err := e.w.Write(b)
	if cap(b) <= maxKeptEncodeBuffer {
		e.buf = b[:0]
	} else {
		e.buf = nil
	}
	if err != nil {
		return fmt.Errorf("upstream: write event: %w", err)
	}
	return nil
}

// appendField appends one line "prefix value\n". The prefix ends with the
// space a reader strips, so a value starting with a space survives.
func appendField(b []byte, prefix, value string) []byte {
	b = append(b, prefix...)
	b = append(b, value...)
	return append(b, '\n')
}

// appendLines appends one prefixed line per line of s, splitting at CRLF,
// LF and lone CR, as a reader will.
func appendLines(b []byte, prefix, s string) []byte {
	for {
		i := indexEOLString(s)
		if i < 0 {
			return appendField(b, prefix, s)
		}
		b = appendField(b, prefix, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}

// indexEOLString is indexEOL for a string.
func indexEOLString(s string) int {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return strings.IndexByte(s, '\r')
	}
	if j := strings.IndexByte(s[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
