package bolt

import (
	"context"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/wakeline/wakeline/store"
)

// Append stores events at the end of stream with resumeID in one commit,
// shared with concurrent writers.
func (s *Store) Append(ctx context.Context, stream string, events []store.Event, resumeID string) ([]store.Event, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return nil, err
	}
	// Encode outside the transaction: the commit is shared, keep it short.
	out := make([]store.Event, len(events))
	copy(out, events)
	size := 0
	for i := range out {
		if out[i].Received.IsZero() {
			out[i].Received = time.Now()
		}
		size += encodedEventLen(&out[i])
	}
	buf := make([]byte, 0, size)
	vals := make([][]byte, len(out))
	for i := range out {
		start := len(buf)
		buf = appendEvent(buf, &out[i])
		vals[i] = buf[start:len(buf):len(buf)]
	}
	var first uint64
	err := s.batch(ctx, "append", func(tx *bbolt.Tx) error {
		var err error
		first, err = appendTx(tx, stream, vals, resumeID)
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Pos = first + uint64(i)
	}
	return out, nil
}

// appendTx writes the encoded events and the new head; it returns the
// position of the first event. It may run more than once (groupCommit).
func appendTx(tx *bbolt.Tx, stream string, vals [][]byte, resumeID string) (uint64, error) {
	name := []byte(stream)
	heads := tx.Bucket(bucketHeads)
	h, err := decodeHead(heads.Get(name))
	if err != nil {
		return 0, err
	}
	first := h.last + 1
	if len(vals) > 0 {
		events := tx.Bucket(bucketEvents)
		// Most puts land at the tail of a stream: fill split pages more than
		// half, without packing them so full that a neighbour's tail splits
		// at every insert.
		events.FillPercent = 0.9
		for i, v := range vals {
			if err := events.Put(eventKey(name, first+uint64(i)), v); err != nil {
				return 0, err
			}
		}
		h.last = first + uint64(len(vals)) - 1
		if h.oldest == 0 {
			h.oldest = first
		}
	}
	h.resumeID = resumeID
	return first, heads.Put(name, h.encode())
}

// Read returns a page of stream after position after.
func (s *Store) Read(ctx context.Context, stream string, after uint64, limit int) (store.Page, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return store.Page{}, err
	}
	if limit < 1 {
		return store.Page{}, fmt.Errorf("bolt: read limit %d: %w", limit, store.ErrInvalid)
	}
	var page store.Page
	err := s.view(ctx, "read", func(tx *bbolt.Tx) error {
		page = store.Page{}
		name := []byte(stream)
		h, err := decodeHead(tx.Bucket(bucketHeads).Get(name))
		if err != nil {
			return err
		}
		page.Oldest, page.Last = h.oldest, h.last
		from, gap := store.ReadStart(h.oldest, h.last, after)
		page.Gap = gap
		if from == 0 || from > h.last {
			return nil
		}
		n := min(uint64(limit), h.last-from+1)
		dec := pageDecoder{raws: make([]rawEvent, 0, n), poss: make([]uint64, 0, n)}
		// Positions from oldest to last are all there: a hole is damage.
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(eventKey(name, from))
		for pos := from; pos < from+n; pos++ {
			if !isEventKey(k, name, pos) {
				return fmt.Errorf("bolt: stream %q: event %d missing: %w", stream, pos, store.ErrNotAStore)
			}
			r, err := parseEvent(v)
			if err != nil {
				return err
			}
			dec.add(pos, r)
			k, v = c.Next()
		}
		page.Events = dec.events()
		return nil
	})
	return page, err
}

// Lookup returns the newest kept position of an event with origin id id.
// It scans the log back from the newest event: there is no index of ids,
// because one would add a page per stream to every commit (ids are not in
// arrival order), and a device resumes from a recent id far more often
// than from an old one. The scan is bounded by the stream's retention.
func (s *Store) Lookup(ctx context.Context, stream, id string) (uint64, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return 0, err
	}
	var pos uint64
	err := s.view(ctx, "lookup", func(tx *bbolt.Tx) error {
		var err error
		pos, err = lookupTx(ctx, tx, []byte(stream), id)
		return err
	})
	if err == nil && pos == 0 {
		err = fmt.Errorf("bolt: stream %q: event id %q: %w", stream, id, store.ErrNotFound)
	}
	return pos, err
}

func lookupTx(ctx context.Context, tx *bbolt.Tx, name []byte, id string) (uint64, error) {
	h, err := decodeHead(tx.Bucket(bucketHeads).Get(name))
	if err != nil || h.oldest == 0 {
		return 0, err
	}
	c := tx.Bucket(bucketEvents).Cursor()
	k, v := c.Seek(eventKey(name, h.last))
	for pos := h.last; pos >= h.oldest; pos-- {
		if !isEventKey(k, name, pos) {
			return 0, fmt.Errorf("bolt: event %d missing: %w", pos, store.ErrNotAStore)
		}
		r, err := parseEvent(v)
		if err != nil {
			return 0, err
		}
		if r.hasID && string(r.id) == id {
			return pos, nil
		}
		if pos%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		k, v = c.Prev()
	}
	return 0, nil
}

// Head returns the stream's resume id and last position.
func (s *Store) Head(ctx context.Context, stream string) (string, uint64, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return "", 0, err
	}
	var h head
	err := s.view(ctx, "head", func(tx *bbolt.Tx) error {
		var err error
		h, err = decodeHead(tx.Bucket(bucketHeads).Get([]byte(stream)))
		return err
	})
	return h.resumeID, h.last, err
}

// Evict removes up to batch events of stream outside r, oldest first, in
// one commit shared with concurrent writers.
func (s *Store) Evict(ctx context.Context, stream string, r store.Retention, now time.Time, batch int) (int, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return 0, err
	}
	if batch < 1 {
		return 0, fmt.Errorf("bolt: evict batch %d: %w", batch, store.ErrInvalid)
	}
	if r.MaxEvents <= 0 && r.MaxAge <= 0 {
		return 0, s.begin(ctx)
	}
	// The janitor calls this for every stream, mostly with nothing to do:
	// find that out without taking a turn in a write commit.
	var any bool
	err := s.view(ctx, "evict", func(tx *bbolt.Tx) error {
		var err error
		any, err = oldestOutside(tx, []byte(stream), r, now)
		return err
	})
	if err != nil || !any {
		return 0, err
	}
	var n int
	err = s.batch(ctx, "evict", func(tx *bbolt.Tx) error {
		var err error
		n, err = evictTx(tx, []byte(stream), r, now, batch)
		return err
	})
	return n, err
}

// oldestOutside reports whether the oldest kept event of the stream falls
// outside r.
func oldestOutside(tx *bbolt.Tx, name []byte, r store.Retention, now time.Time) (bool, error) {
	h, err := decodeHead(tx.Bucket(bucketHeads).Get(name))
	if err != nil || h.oldest == 0 {
		return false, err
	}
	if r.MaxEvents > 0 && h.last-h.oldest >= uint64(r.MaxEvents) {
		return true, nil // too many, whatever its age
	}
	v := tx.Bucket(bucketEvents).Get(eventKey(name, h.oldest))
	if v == nil {
		return false, nil
	}
	ev, err := parseEvent(v)
	if err != nil {
		return false, err
	}
	return r.Outside(h.oldest, h.last, time.Unix(0, ev.received), now), nil
}

// evictTx deletes the events from the oldest on while they are outside r,
// at most batch of them; positions are contiguous, so no cursor is needed.
func evictTx(tx *bbolt.Tx, name []byte, r store.Retention, now time.Time, batch int) (int, error) {
	heads := tx.Bucket(bucketHeads)
	h, err := decodeHead(heads.Get(name))
	if err != nil || h.oldest == 0 {
		return 0, err
	}
	events := tx.Bucket(bucketEvents)
	n := 0
	for ; n < batch && h.oldest <= h.last; n++ {
		key := eventKey(name, h.oldest)
		v := events.Get(key)
		if v == nil {
			return 0, fmt.Errorf("bolt: event %d missing from its log: %w", h.oldest, store.ErrNotAStore)
		}
		ev, err := parseEvent(v)
		if err != nil {
			return 0, err
		}
		if !r.Outside(h.oldest, h.last, time.Unix(0, ev.received), now) {
			break
		}
		if err := events.Delete(key); err != nil {
			return 0, err
		}
		h.oldest++
	}
	if n == 0 {
		return 0, nil
	}
	if h.oldest > h.last {
		h.oldest = 0
	}
	return n, heads.Put(name, h.encode())
}
