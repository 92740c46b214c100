package bolt

import (
	"context"
	"encoding/json"
	"fmt"
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
		b, stream := subBucket(tx, device, upstream)
		if found = stream != nil; !found {
			return nil
		}
		key := devKey(kindCursor, upstream)
		if pos <= u64(b.Get(key)) {
			return nil
		}
		return b.Put(key, u64Bytes(pos))
	})
	if err == nil && !found {
		err = noSub(device, upstream)
	}
	return err
}

// Cursor returns the device's cursor for upstream and the kept events after
// it, from the stream's head: four key lookups whatever the log's length.
func (s *Store) Cursor(ctx context.Context, device, upstream string) (uint64, int64, error) {
	var pos uint64
	var pending int64
	err := s.view(ctx, "cursor", func(tx *bbolt.Tx) error {
		b, stream := subBucket(tx, device, upstream)
		if stream == nil {
			return abort{noSub(device, upstream)}
		}
		h, err := decodeHead(tx.Bucket(bucketHeads).Get(stream))
		if err != nil {
			return err
		}
		pos = u64(b.Get(devKey(kindCursor, upstream)))
		pending = store.Pending(h.oldest, h.last, pos)
		return nil
	})
	return pos, pending, err
}

// ClaimWake claims the wake of the device for upstream unless one younger
// than rewakeAfter is outstanding.
func (s *Store) ClaimWake(ctx context.Context, device, upstream string, now time.Time, rewakeAfter time.Duration) (bool, error) {
	var found, won bool
	err := s.batch(ctx, "claim wake", func(tx *bbolt.Tx) error {
		won = false
		b, stream := subBucket(tx, device, upstream)
		if found = stream != nil; !found {
			return nil
		}
		key := devKey(kindWake, upstream)
		if v := b.Get(key); v != nil {
			since := time.Unix(0, int64(u64(v)))
			if now.Sub(since) < rewakeAfter {
				return nil
			}
		}
		won = true
		return b.Put(key, u64Bytes(uint64(now.UnixNano())))
	})
	if err == nil && !found {
		err = noSub(device, upstream)
	}
	return won, err
}

// ClearWake ends the outstanding wake of the device for upstream.
func (s *Store) ClearWake(ctx context.Context, device, upstream string) error {
	var found bool
	err := s.batch(ctx, "clear wake", func(tx *bbolt.Tx) error {
		b, stream := subBucket(tx, device, upstream)
		if found = stream != nil; !found {
			return nil
		}
		return b.Delete(devKey(kindWake, upstream))
	})
	if err == nil && !found {
		err = noSub(device, upstream)
	}
	return err
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
