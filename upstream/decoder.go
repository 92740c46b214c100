package upstream

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// DefaultMaxSize bounds a line and an event's data when Decoder.MaxSize is 0.
const DefaultMaxSize = 1 << 20

const (
	// minBuffer is the decoder's first read buffer. It is small because most
	// streams the gateway holds are idle, and an idle stream keeps its buffer
	// while it waits; the buffer grows when reads fill it.
	minBuffer = 256
	// maxReadBuffer caps growth driven by throughput (not by a long line):
	// past it, bigger reads no longer pay for themselves.
	maxReadBuffer = 32 << 10
	// defaultType is the event type when a block set none.
	defaultType = "message"
)

var bom = []byte("\uFEFF")

// Event is one dispatched event.
type Event struct {
	// Type is the event type; "message" when the event set none.
	Type string
	// Data is the event's data lines joined with LF, trailing LF removed.
	Data string
	// ID is the value of this event's own id field; meaningful when HasID.
	ID string
	// HasID says the event's block had an id field that was not ignored (an
	// id containing U+0000 is ignored). The empty id is a legal value: it
	// resets the last event ID.
	HasID bool
	// LastEventID is the "last event ID string" a spec client holds after
	// this event: the block's id if it had one, else the one before.
	LastEventID string
}

// Decoder reads events from a text/event-stream incrementally, following the
// HTML standard's "interpreting an event stream" to the letter: UTF-8 with
// replacement, one leading BOM stripped, CRLF, LF or a lone CR ending a line
// (also when the CR and LF arrive in different reads), comments and unknown
// fields ignored, one leading space stripped from a value.
//
// It processes each line as soon as its terminator arrives, so a live stream
// is never delayed. Memory is bounded by MaxSize: a longer line or event data
// is ErrTooLarge. A Decoder is not safe for concurrent use.
type Decoder struct {
	// MaxSize bounds a line and an event's data, in bytes. Zero means
	// DefaultMaxSize. Set it before the first call to Next.
	MaxSize int

	r       io.Reader
	buf     []byte
	start   int   // first unread byte of buf
	end     int   // end of read bytes in buf
	scanned int   // bytes after start known to hold no CR or LF
	rerr    error // error from r, returned once buf is used up
	err     error // sticky: every later Next returns it
	skipLF  bool  // the last line ended with a CR at the end of buf
	bomDone bool
	// emptyReads counts reads in a row that returned nothing.
	emptyReads int

	data     []byte // data buffer, values joined with LF (no trailing LF)
	hasData  bool   // a data field was seen in this block
	typ      []byte // event type buffer
	typeStr  string // the last type string made, reused while it repeats
	idBuf    string // last event ID buffer
	lastID   string // last event ID string (set at each blank line)
	hasID    bool   // this block had an id field that was not ignored
	retry    time.Duration
	hasRetry bool
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r}
}

// SetLastEventID sets the last event ID the decoder starts from. A client
// that reconnects with a Last-Event-ID carries that id on, as browsers do,
// so that events without an id field report it as their LastEventID.
func (d *Decoder) SetLastEventID(id string) {
	d.idBuf, d.lastID = id, id
}

// LastEventID returns the last event ID string a spec client holds now: the
// id as of the last blank line, which events with empty data also update.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the reconnection time of the last valid retry field, and
// whether one was seen. Values too large for a Duration saturate.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.hasRetry }

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF and discards an incomplete event, as the standard says. A
// line or event data longer than MaxSize is an error wrapping ErrTooLarge;
// other errors are the reader's. After an error every call returns it again.
func (d *Decoder) Next() (Event, error) {
	for {
		ev, ok, err := d.parse()
		if err != nil || ok {
			return ev, err
		}
		n, err := d.r.Read(d.readSpace())
		d.advance(n, err)
	}
}

// parse returns the next event from the bytes already read: ok is false
// when it needs more input. It never reads, so that Client can do the
// blocking read itself, a few shallow frames below Run: an idle stream's
// goroutine then fits a small stack.
func (d *Decoder) parse() (ev Event, ok bool, err error) {
	if d.err != nil {
		return Event{}, false, d.err
	}
	for {
		line, ok, err := d.line()
		if err != nil {
			d.err = err
			d.resetBlock()
			return Event{}, false, err
		}
		if !ok {
			return Event{}, false, nil
		}
		if len(line) == 0 {
			if ev, ok := d.dispatch(); ok {
				return ev, true, nil
			}
			continue
		}
		if err := d.field(line); err != nil {
			d.err = err
			d.resetBlock()
			return Event{}, false, err
		}
	}
}

func (d *Decoder) maxSize() int {
	if d.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return d.MaxSize
}

// line returns the next complete line without its terminator, or ok false
// when there is none yet. The slice aliases the buffer and is valid until
// the next read.
func (d *Decoder) line() (line []byte, ok bool, err error) {
	if d.skipLF && d.start < d.end {
		if d.buf[d.start] == '\n' {
			d.start++
		}
		d.skipLF = false
	}
	if line, ok := d.cutLine(); ok {
		if len(line) > d.maxSize() {
			// Checked here too, so the answer does not depend on how the
			// bytes were split into reads.
			return nil, false, d.tooLong()
		}
		if !d.bomDone {
			d.bomDone = true
			line = bytes.TrimPrefix(line, bom)
		}
		return line, true, nil
	}
	if d.end-d.start > d.maxSize() {
		return nil, false, d.tooLong()
	}
	if d.rerr != nil {
		// End of input: an unterminated line is part of an incomplete
		// event, which is discarded.
		return nil, false, d.rerr
	}
	return nil, false, nil
}

func (d *Decoder) tooLong() error {
	return fmt.Errorf("upstream: line longer than %d bytes: %w", d.maxSize(), ErrTooLarge)
}

// cutLine takes one terminated line off the buffer, if there is one. It
// never rescans bytes it already knows hold no terminator, so a long line
// arriving a byte at a time costs linear time.
func (d *Decoder) cutLine() ([]byte, bool) {
	b := d.buf[d.start:d.end]
	i := indexEOL(b[d.scanned:])
	if i < 0 {
		d.scanned = len(b)
		return nil, false
	}
	i += d.scanned
	line := b[:i]
	next := i + 1
	if b[i] == '\r' {
		switch {
		case next == len(b):
			d.skipLF = true // the LF of a CRLF may be in the next read
		case b[next] == '\n':
			next++
		}
	}
	d.start += next
	d.scanned = 0
	return line, true
}

// indexEOL returns the index of the first CR or LF in b, or -1.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// readSpace returns where the next read goes, compacting or growing the
// buffer first so that a line of up to MaxSize bytes fits.
func (d *Decoder) readSpace() []byte {
	if d.start > 0 && (d.start == d.end || d.end == len(d.buf)) {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	if d.end == len(d.buf) {
		d.grow()
	}
	return d.buf[d.end:]
}

// advance records the result of a read into readSpace.
func (d *Decoder) advance(n int, err error) {
	space := len(d.buf) - d.end
	if n < 0 || n > space {
		d.rerr = fmt.Errorf("upstream: reader returned invalid count %d", n)
		return
	}
	d.end += n
	switch {
	case err != nil:
		d.rerr = err
	case n == 0:
		if d.emptyReads++; d.emptyReads >= 100 {
			d.rerr = io.ErrNoProgress
		}
	default:
		d.emptyReads = 0
		if n == space && 2*space >= len(d.buf) && len(d.buf) < maxReadBuffer {
			// A read that filled most of the buffer means data is
			// flowing: read more at a time. A slow drip that fills the
			// last few bytes does not count.
			d.grow()
		}
	}
}

// grow doubles the buffer, up to what a line of MaxSize bytes plus its
// terminator needs.
func (d *Decoder) grow() {
	limit := d.maxSize() + 2
	n := max(2*len(d.buf), minBuffer)
	if n > limit {
		n = max(limit, len(d.buf))
	}
	if n == len(d.buf) {
		return
	}
	nb := make([]byte, n)
	d.end = copy(nb, d.buf[d.start:d.end])
	d.start = 0
	d.buf = nb
}

// field processes one non-empty line.
func (d *Decoder) field(line []byte) error {
	if line[0] == ':' {
		return nil // comment
	}
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		return d.appendData(value)
	case "event":
		d.typ = append(d.typ[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return nil
		}
		d.hasID = true
		if string(value) != d.idBuf {
			d.idBuf = validString(value)
		}
	case "retry":
		d.setRetry(value)
	}
	return nil
}

func (d *Decoder) appendData(value []byte) error {
	n := len(d.data) + len(value)
	if d.hasData {
		n++
	}
	if n > d.maxSize() {
		return fmt.Errorf("upstream: event data longer than %d bytes: %w", d.maxSize(), ErrTooLarge)
	}
	if d.hasData {
		d.data = append(d.data, '\n')
	}
	d.data = append(d.data, value...)
	d.hasData = true
	return nil
}

// setRetry applies a retry field: only a value of ASCII digits counts.
func (d *Decoder) setRetry(value []byte) {
	if len(value) == 0 {
		return
	}
	var ms uint64
	for _, c := range value {
		if c < '0' || c > '9' {
			return
		}
		if ms <= math.MaxUint64/10 {
			ms = ms*10 + uint64(c-'0')
		} else {
			ms = math.MaxUint64
		}
	}
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		d.retry = time.Duration(math.MaxInt64)
	} else {
		d.retry = time.Duration(ms) * time.Millisecond
	}
	d.hasRetry = true
}

// dispatch ends a block at a blank line. It reports whether an event is
// dispatched (the block had a data field).
func (d *Decoder) dispatch() (Event, bool) {
	d.lastID = d.idBuf
	if !d.hasData {
		d.resetBlock()
		return Event{}, false
	}
	ev := Event{
		Type:        d.typeString(),
		Data:        validString(d.data),
		HasID:       d.hasID,
		LastEventID: d.lastID,
	}
	if ev.HasID {
		ev.ID = d.lastID
	}
	d.resetBlock()
	return ev, true
}

// typeString returns the event type, reusing the last string made while the
// origin repeats the same type, which saves an allocation per event.
func (d *Decoder) typeString() string {
	if len(d.typ) == 0 {
		return defaultType
	}
	if string(d.typ) != d.typeStr {
		d.typeStr = validString(d.typ)
	}
	return d.typeStr
}

func (d *Decoder) resetBlock() {
	d.data = d.data[:0]
	d.typ = d.typ[:0]
	d.hasData, d.hasID = false, false
	if cap(d.data) > maxReadBuffer {
		// Do not keep a buffer sized for one huge event for the life of
		// the stream.
		d.data = nil
	}
}

// validString returns b as a string, with ill-formed UTF-8 replaced.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(appendUTF8(make([]byte, 0, len(b)+8), b))
}
