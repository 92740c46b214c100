package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/wakeline/wakeline/store"
)

// subBucket returns the device's bucket and the stream it reads for
// upstream, or nil when the device or the subscription does not exist.
func subBucket(tx *bbolt.Tx, device, upstream string) (*bbolt.Bucket, []byte) {
	b := tx.Bucket(bucketDevices).Bucket([]byte(device))
	if b == nil {
		return nil, nil
	}
	stream := b.Get(devKey(kindStream, upstream))
	if stream == nil {
		return nil, nil
	}
	return b, stream
}

func noSub(device, upstream string) error {
	return fmt.Errorf("bolt: device %q, upstream %q: %w", device, upstream, store.ErrNotFound)
}

// SetCursor moves the device's cursor for upstream forward to pos.
func (s *Store) SetCursor(ctx context.Context, device, upstream string, pos uint64) error {
	var found bool
	err := s.batch(ctx, "set cursor", func(tx *bbolt.Tx) error {
		found = false
		if _, stream := subBucket(tx, device, upstream); stream == nil {
			return nil
		}
		found = true
		return putCursor(tx, device, upstream, pos)
	})
	if err == nil && !found {
		err = noSub(device, upstream)
	}
	return err
}

// cursorKey names a cursor in bucketCursors.
func cursorKey(device, upstream string) []byte {
	return []byte(device + "\x00" + upstream)
}

// putCursor moves a cursor forward, never back.
func putCursor(tx *bbolt.Tx, device, upstream string, pos uint64) error {
	b, key := tx.Bucket(bucketCursors), cursorKey(device, upstream)
	if pos <= u64(b.Get(key)) {
		return nil
	}
	return b.Put(key, u64Bytes(pos))
}

var _ store.CursorBatcher = (*Store)(nil)

// SetCursors records every cursor of updates in one commit.
func (s *Store) SetCursors(ctx context.Context, updates []store.CursorUpdate) error {
	return s.batch(ctx, "set cursors", func(tx *bbolt.Tx) error {
		for _, u := range updates {
			if _, stream := subBucket(tx, u.Device, u.Upstream); stream == nil {
				continue // deleted or unsubscribed meanwhile
			}
			if err := putCursor(tx, u.Device, u.Upstream, u.Pos); err != nil {
				return err
			}
		}
		return nil
	})
}

// Cursor returns the device's cursor for upstream and the kept events after
// it, from the stream's head: four key lookups whatever the log's length.
func (s *Store) Cursor(ctx context.Context, device, upstream string) (uint64, int64, error) {
	var pos uint64
	var pending int64
	err := s.view(ctx, "cursor", func(tx *bbolt.Tx) error {
		_, stream := subBucket(tx, device, upstream)
		if stream == nil {
			return abort{noSub(device, upstream)}
		}
		h, err := decodeHead(tx.Bucket(bucketHeads).Get(stream))
		if err != nil {
			return err
		}
		pos = u64(tx.Bucket(bucketCursors).Get(cursorKey(device, upstream)))
		pending = store.Pending(h.oldest, h.last, pos)
		return nil
	})
	return pos, pending, err
}

// ClaimWake claims the wake of the device for upstream unless one younger
// than rewakeAfter is outstanding. Claims live in memory (see wakeTable):
// no commit, so a burst of wakes for a thousand devices costs no fsync.
func (s *Store) ClaimWake(ctx context.Context, device, upstream string, now time.Time, rewakeAfter time.Duration) (bool, error) {
	s.wakes.mu.Lock()
	defer s.wakes.mu.Unlock()
	stream, err := s.subStream(ctx, device, upstream)
	if err != nil {
		return false, err
	}
	if w, ok := s.wakes.m[device][upstream]; ok && w.stream == stream && now.Sub(w.since) < rewakeAfter {
		return false, nil
	}
	if s.wakes.m[device] == nil {
		s.wakes.m[device] = map[string]wakeEntry{}
	}
	s.wakes.m[device][upstream] = wakeEntry{since: now, stream: stream}
	return true, nil
}

// ClearWake ends the outstanding wake of the device for upstream.
func (s *Store) ClearWake(ctx context.Context, device, upstream string) error {
	s.wakes.mu.Lock()
	defer s.wakes.mu.Unlock()
	if _, err := s.subStream(ctx, device, upstream); err != nil {
		return err
	}
	delete(s.wakes.m[device], upstream)
	if len(s.wakes.m[device]) == 0 {
		delete(s.wakes.m, device)
	}
	return nil
}

// subStream returns the stream the device reads for upstream, or
// ErrNotFound.
func (s *Store) subStream(ctx context.Context, device, upstream string) (string, error) {
	var stream string
	err := s.view(ctx, "wake", func(tx *bbolt.Tx) error {
		_, st := subBucket(tx, device, upstream)
		if st == nil {
			return abort{noSub(device, upstream)}
		}
		stream = string(st)
		return nil
	})
	return stream, err
}

// wakeTable holds the outstanding wake claims. One process holds a bolt
// file, so a mutex is as atomic as a commit and much cheaper; what a
// restart forgets is at most one extra wake per device, which rewake_after
// allows anyway. Registry writes drop the claims of subscriptions they end
// (forget), after their commit, under the same mutex: a claim racing the
// commit is dropped with it.
type wakeTable struct {
	mu sync.Mutex
	m  map[string]map[string]wakeEntry // device → upstream → claim
}

type wakeEntry struct {
	since  time.Time
	stream string // a claim is for the stream it was made on
}

// forget drops the device's claims for upstreams not in keep (keep nil:
// every claim of the device).
func (w *wakeTable) forget(device string, keep map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for up, e := range w.m[device] {
		if stream, ok := keep[up]; !ok || stream != e.stream {
			delete(w.m[device], up)
		}
	}
	if len(w.m[device]) == 0 {
		delete(w.m, device)
	}
}

type vapidRecord struct {
	Public  string `json:"public"`
	Private string `json:"private"`
}

// VAPIDKeys returns the stored key pair, storing generate's first. generate
// runs outside any transaction; when two callers race, the first commit
// wins and both return its pair.
func (s *Store) VAPIDKeys(ctx context.Context, generate func() (store.VAPIDKeys, error)) (store.VAPIDKeys, error) {
	var keys store.VAPIDKeys
	var ok bool
	read := func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyVAPID)
		if ok = v != nil; !ok {
			return nil
		}
		var r vapidRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("bolt: bad vapid record: %w", store.ErrNotAStore)
		}
		keys = store.VAPIDKeys(r)
		return nil
	}
	if err := s.view(ctx, "vapid keys", read); err != nil || ok {
		return keys, err
	}
	fresh, err := generate()
	if err != nil {
		return store.VAPIDKeys{}, fmt.Errorf("bolt: generate vapid keys: %w", err)
	}
	if fresh.Public == "" || fresh.Private == "" {
		return store.VAPIDKeys{}, fmt.Errorf("bolt: generated vapid keys are empty: %w", store.ErrInvalid)
	}
	rec, err := json.Marshal(vapidRecord(fresh))
	if err != nil {
		return store.VAPIDKeys{}, err
	}
	err = s.update(ctx, "vapid keys", func(tx *bbolt.Tx) error {
		if err := read(tx); err != nil || ok {
			return err
		}
		keys = fresh
		return tx.Bucket(bucketMeta).Put(keyVAPID, rec)
	})
	return keys, err
}
