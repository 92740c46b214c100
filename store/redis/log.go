package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// evictChunk is how many events Evict judges and removes per round trip:
// the judging reads them whole.
const evictChunk = 256

// maxRetries bounds the attempts of an operation that found the store moved
// under it (a Read racing an eviction, an UpdateDevice racing a write).
const maxRetries = 100

// leaseKey is the context key of the lease a Cluster's Lead hands out.
type leaseKey struct{}

// lease is what Append checks in Redis before it stores anything.
type lease struct{ key, token string }

func withLease(ctx context.Context, l lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// streamKeys are the keys of one stream: head, log, ids.
func (s *Store) streamKeys(stream string) []string {
	return []string{s.key("head:", stream), s.key("log:", stream), s.key("ids:", stream)}
}

// ownerOf returns the device whose own stream this is ("d/<id>/..."), or "".
func ownerOf(stream string) string {
	rest, ok := strings.CutPrefix(stream, "d/")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "/")
	if !ok || id == "" {
		return ""
	}
	return id
}

// Append stores events at the end of stream with resumeID in one script.
// When ctx carries a lease from Cluster.Lead, the script first checks that
// the lease is still this replica's, and fails with ErrLeaseLost if not.
//
// A reply lost to a timeout leaves the caller unsure whether the batch was
// stored; the resume id it stored with tells the origin client where to
// resume, so nothing is fetched twice.
func (s *Store) Append(ctx context.Context, stream string, events []store.Event, resumeID string) ([]store.Event, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return nil, err
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	out := make([]store.Event, len(events))
	copy(out, events)
	own := ownerOf(stream)
	keys := append(s.streamKeys(stream), s.key("own:", own), s.key("lease:", stream))
	args := make([]any, 4, 4+4*len(out))
	args[0], args[1] = resumeID, len(out)
	if own != "" {
		args[2] = stream
	} else {
		args[2] = ""
	}
	args[3] = ""
	if l, ok := ctx.Value(leaseKey{}).(lease); ok {
		keys[4], args[3] = l.key, l.token
	}
	now := time.Now()
	for i := range out {
		if out[i].Received.IsZero() {
			out[i].Received = now
		}
		flag := "0"
		if out[i].HasID {
			flag = "1"
		}
		args = append(args, strconv.FormatInt(out[i].Received.UnixNano(), 10), out[i].Type, flag+out[i].ID, out[i].Data)
	}
	first, err := appendScript.Run(ctx, s.rdb, keys, args...).Uint64()
	if err != nil {
		return nil, s.wrap("append to "+strconv.Quote(stream), err)
	}
	for i := range out {
		out[i].Pos = first + uint64(i)
		out[i].Received = time.Unix(0, out[i].Received.UnixNano())
	}
	return out, nil
}

// Read returns a page of stream after position after: at most limit
// events, and at most 1024.
func (s *Store) Read(ctx context.Context, stream string, after uint64, limit int) (store.Page, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return store.Page{}, err
	}
	if limit < 1 {
		return store.Page{}, fmt.Errorf("redis: read limit %d: %w", limit, store.ErrInvalid)
	}
	if err := s.begin(ctx); err != nil {
		return store.Page{}, err
	}
	limit = min(limit, maxReadPage)
	// Guess where the page starts (after+1, or the oldest when after is 0),
	// then check the guess with store.ReadStart on what the snapshot saw;
	// an eviction in between costs one more round.
	var from uint64
	if after > 0 {
		from = after + 1
	}
	for range maxRetries {
		p, err := s.snapshot(ctx, stream, from, limit)
		if err != nil {
			return store.Page{}, err
		}
		want, gap := store.ReadStart(p.Oldest, p.Last, after)
		if want == 0 || want > p.Last {
			return store.Page{Gap: gap, Oldest: p.Oldest, Last: p.Last}, nil
		}
		if len(p.Events) > 0 && p.Events[0].Pos == want {
			p.Gap = gap
			return p, nil
		}
		from = want
	}
	return store.Page{}, fmt.Errorf("redis: read %q: the log kept moving", stream)
}

// snapshot reads, in one MULTI, the stream's last position, its length and
// up to count events from position from on (0: from the oldest). The
// events bypass Lua: converting them to Lua values and back costs ten
// times the XRANGE.
func (s *Store) snapshot(ctx context.Context, stream string, from uint64, count int) (store.Page, error) {
	keys := s.streamKeys(stream)
	start := "-"
	if from > 0 {
		start = strconv.FormatUint(from, 10) + "-0"
	}
	var head *goredis.SliceCmd
	var n *goredis.IntCmd
	var rng *goredis.Cmd
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		head = p.HMGet(ctx, keys[0], "last")
		n = p.XLen(ctx, keys[1])
		rng = p.Do(ctx, "XRANGE", keys[1], start, "+", "COUNT", count)
		return nil
	})
	if err != nil {
		return store.Page{}, s.wrap("read "+strconv.Quote(stream), err)
	}
	var p store.Page
	if v := head.Val(); len(v) == 1 && v[0] != nil {
		last, err := strconv.ParseUint(fmt.Sprint(v[0]), 10, 64)
		if err != nil {
			return p, fmt.Errorf("redis: read %q: bad last position: %w", stream, store.ErrNotAStore)
		}
		p.Last = last
	}
	if kept := uint64(n.Val()); kept > 0 {
		if kept > p.Last {
			return p, fmt.Errorf("redis: read %q: %d events kept of %d: %w", stream, kept, p.Last, store.ErrNotAStore)
		}
		p.Oldest = p.Last - kept + 1
	}
	entries, _ := rng.Val().([]any)
	p.Events = make([]store.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := parseEntry(e)
		if err != nil {
			return p, fmt.Errorf("redis: read %q: %w", stream, err)
		}
		p.Events = append(p.Events, ev)
	}
	return p, nil
}

// parseEntry decodes one stream entry: ["<pos>-0", [field, value, ...]].
func parseEntry(e any) (store.Event, error) {
	var ev store.Event
	pair, ok := e.([]any)
	if !ok || len(pair) != 2 {
		return ev, fmt.Errorf("bad log entry: %w", store.ErrNotAStore)
	}
	id, _ := pair[0].(string)
	pos, ok := strings.CutSuffix(id, "-0")
	fields, ok2 := pair[1].([]any)
	if !ok || !ok2 {
		return ev, fmt.Errorf("bad log entry %q: %w", id, store.ErrNotAStore)
	}
	var err error
	if ev.Pos, err = strconv.ParseUint(pos, 10, 64); err != nil {
		return ev, fmt.Errorf("bad log entry %q: %w", id, store.ErrNotAStore)
	}
	var seen int
	for j := 0; j+1 < len(fields); j += 2 {
		name, _ := fields[j].(string)
		val, _ := fields[j+1].(string)
		switch name {
		case "r":
			ns, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return ev, fmt.Errorf("bad received time of event %d: %w", ev.Pos, store.ErrNotAStore)
			}
			ev.Received = time.Unix(0, ns)
		case "t":
			ev.Type = val
		case "i":
			if val == "" {
				return ev, fmt.Errorf("bad id of event %d: %w", ev.Pos, store.ErrNotAStore)
			}
			ev.HasID, ev.ID = val[0] == '1', val[1:]
		case "d":
			ev.Data = val
		default:
			continue
		}
		seen++
	}
	if seen != 4 {
		return ev, fmt.Errorf("event %d lacks fields: %w", ev.Pos, store.ErrNotAStore)
	}
	return ev, nil
}

// Lookup returns the newest kept position of an event with origin id id,
// from the stream's index of ids.
func (s *Store) Lookup(ctx context.Context, stream, id string) (uint64, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return 0, err
	}
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	res, err := lookupScript.Run(ctx, s.rdb, s.streamKeys(stream), id).StringSlice()
	if err != nil {
		return 0, s.wrap("lookup in "+strconv.Quote(stream), err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("redis: lookup in %q: bad reply: %w", stream, store.ErrNotAStore)
	}
	pos, err1 := strconv.ParseUint(res[0], 10, 64)
	oldest, err2 := strconv.ParseInt(res[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("redis: lookup in %q: bad reply: %w", stream, store.ErrNotAStore)
	}
	if pos == 0 || oldest < 1 || pos < uint64(oldest) {
		return 0, fmt.Errorf("redis: stream %q: event id %q: %w", stream, id, store.ErrNotFound)
	}
	return pos, nil
}

// Head returns the stream's resume id and last position.
func (s *Store) Head(ctx context.Context, stream string) (string, uint64, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return "", 0, err
	}
	if err := s.begin(ctx); err != nil {
		return "", 0, err
	}
	res, err := headScript.Run(ctx, s.rdb, s.streamKeys(stream)[:2]).Slice()
	if err != nil {
		return "", 0, s.wrap("head of "+strconv.Quote(stream), err)
	}
	if len(res) != 3 {
		return "", 0, fmt.Errorf("redis: head of %q: bad reply: %w", stream, store.ErrNotAStore)
	}
	resume, _ := res[0].(string)
	last, err := strconv.ParseUint(fmt.Sprint(res[1]), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("redis: head of %q: bad position: %w", stream, store.ErrNotAStore)
	}
	return resume, last, nil
}

// Evict removes up to batch events of stream outside r, oldest first. It
// works in chunks: a script reads the oldest events' positions and times,
// Retention.Outside judges them here, and a second script removes those
// outside if the log's oldest event is still the one judged first. Each
// chunk is its own transaction, so appends never wait long.
func (s *Store) Evict(ctx context.Context, stream string, r store.Retention, now time.Time, batch int) (int, error) {
	if err := store.CheckName("stream", stream); err != nil {
		return 0, err
	}
	if batch < 1 {
		return 0, fmt.Errorf("redis: evict batch %d: %w", batch, store.ErrInvalid)
	}
	if err := s.begin(ctx); err != nil || (r.MaxEvents <= 0 && r.MaxAge <= 0) {
		return 0, err
	}
	keys := s.streamKeys(stream)
	done := 0
	for conflicts := 0; done < batch; {
		args, k, more, err := s.judge(ctx, stream, r, now, min(batch-done, evictChunk))
		if err != nil || k == 0 {
			return done, err
		}
		n, err := trimScript.Run(ctx, s.rdb, keys, args...).Int()
		if err != nil {
			return done, s.wrap("evict from "+strconv.Quote(stream), err)
		}
		if n < 0 {
			// Another evictor got there first: judge again.
			if conflicts++; conflicts > maxRetries {
				return done, fmt.Errorf("redis: evict from %q: the log kept moving", stream)
			}
			continue
		}
		done += n
		if !more {
			return done, nil
		}
	}
	return done, nil
}

// judge reads up to chunk of the oldest events and counts how many, from
// the oldest on, fall outside r; more is false when an event inside r
// stopped the count. args are trimScript's: the oldest position, the
// count, and the position and origin id of each event to remove.
func (s *Store) judge(ctx context.Context, stream string, r store.Retention, now time.Time, chunk int) (args []any, k int, more bool, err error) {
	p, err := s.snapshot(ctx, stream, 0, chunk)
	if err != nil || len(p.Events) == 0 {
		return nil, 0, false, err
	}
	args = []any{p.Events[0].Pos, 0}
	for _, e := range p.Events {
		if !r.Outside(e.Pos, p.Last, e.Received, now) {
			break
		}
		if e.HasID {
			args = append(args, e.Pos, e.ID)
		}
		k++
	}
	args[1] = k
	return args, k, k == chunk, nil
}

// isNil reports go-redis's "no such key" (a script returning false).
func isNil(err error) bool { return errors.Is(err, goredis.Nil) }
