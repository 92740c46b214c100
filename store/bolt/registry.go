package bolt

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/wakeline/wakeline/store"
)

// devicesPage is how many devices Devices reads per read transaction: fn
// runs between transactions, so it may write to the store (a write waiting
// on a remap while this goroutine holds a reader would deadlock).
const devicesPage = 256

func notFound(id string) error {
	return fmt.Errorf("bolt: device %q: %w", id, store.ErrNotFound)
}

// CreateDevice stores d; store.ErrExists if its id is taken.
func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	if err := store.CheckDevice(&d); err != nil {
		return err
	}
	rec, err := encodeDevice(&d)
	if err != nil {
		return fmt.Errorf("bolt: encode device: %w", err)
	}
	return s.batch(ctx, "create device", func(tx *bbolt.Tx) error {
		devs := tx.Bucket(bucketDevices)
		if devs.Bucket([]byte(d.ID)) != nil {
			return abort{fmt.Errorf("bolt: device %q: %w", d.ID, store.ErrExists)}
		}
		b, err := devs.CreateBucket([]byte(d.ID))
		if err != nil {
			return err
		}
		if err := b.Put(keyRecord, rec); err != nil {
			return err
		}
		return syncSubs(tx, b, d.ID, nil, d.Subscriptions)
	})
}

// Device returns the device with id id.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	var d store.Device
	err := s.view(ctx, "device", func(tx *bbolt.Tx) error {
		var err error
		d, err = loadDevice(tx, id)
		return err
	})
	return d, err
}

func loadDevice(tx *bbolt.Tx, id string) (store.Device, error) {
	b := tx.Bucket(bucketDevices).Bucket([]byte(id))
	if b == nil {
		return store.Device{}, abort{notFound(id)}
	}
	return decodeDevice(b.Get(keyRecord))
}

// UpdateDevice applies fn to the stored device in a commit shared with
// concurrent writers (push results update devices at the rate of wakes);
// fn may run again when another write of the batch fails.
func (s *Store) UpdateDevice(ctx context.Context, id string, fn func(*store.Device) error) (store.Device, error) {
	var d store.Device
	err := s.batch(ctx, "update device", func(tx *bbolt.Tx) error {
		var err error
		if d, err = loadDevice(tx, id); err != nil {
			return err
		}
		// d was decoded afresh: fn's changes reach nothing else if it fails.
		old := d.Subscriptions
		d.Subscriptions = append([]store.Subscription(nil), old...)
		if err := fn(&d); err != nil {
			return abort{err}
		}
		if d.ID != id {
			return abort{fmt.Errorf("bolt: device %q: id cannot change to %q: %w", id, d.ID, store.ErrInvalid)}
		}
		if err := store.CheckDevice(&d); err != nil {
			return abort{err}
		}
		rec, err := encodeDevice(&d)
		if err != nil {
			return abort{fmt.Errorf("bolt: encode device: %w", err)}
		}
		b := tx.Bucket(bucketDevices).Bucket([]byte(id))
		if err := b.Put(keyRecord, rec); err != nil {
			return err
		}
		return syncSubs(tx, b, id, old, d.Subscriptions)
	})
	if err != nil {
		return store.Device{}, err
	}
	keep := make(map[string]string, len(d.Subscriptions))
	for _, sub := range d.Subscriptions {
		keep[sub.Upstream] = sub.Stream
	}
	s.wakes.forget(id, keep)
	return d, nil
}

// syncSubs brings the index of devices by stream and the per-upstream keys
// of the device's bucket from old to now: an upstream dropped, or moved to
// another stream, loses its cursor and wake claim.
func syncSubs(tx *bbolt.Tx, b *bbolt.Bucket, id string, old, now []store.Subscription) error {
	subs := tx.Bucket(bucketSubs)
	keep := make(map[string]string, len(now))
	for _, sub := range now {
		keep[sub.Upstream] = sub.Stream
	}
	for _, sub := range old {
		if keep[sub.Upstream] == sub.Stream {
			continue
		}
		if err := subs.Delete(subKey(sub.Stream, id)); err != nil {
			return err
		}
		if err := b.Delete(devKey(kindStream, sub.Upstream)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCursors).Delete(cursorKey(id, sub.Upstream)); err != nil {
			return err
		}
	}
	for _, sub := range now {
		if err := subs.Put(subKey(sub.Stream, id), nil); err != nil {
			return err
		}
		if err := b.Put(devKey(kindStream, sub.Upstream), []byte(sub.Stream)); err != nil {
			return err
		}
	}
	return nil
}

// DeleteDevice removes the device, its cursors and wakes, and its own
// streams "d/<id>/..." (their heads keep the last position).
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	if err := store.CheckName("device", id); err != nil {
		return err
	}
	defer s.wakes.forget(id, nil)
	return s.update(ctx, "delete device", func(tx *bbolt.Tx) error {
		d, err := loadDevice(tx, id)
		if err != nil {
			return err
		}
		subs, cursors := tx.Bucket(bucketSubs), tx.Bucket(bucketCursors)
		for _, sub := range d.Subscriptions {
			if err := subs.Delete(subKey(sub.Stream, id)); err != nil {
				return err
			}
			if err := cursors.Delete(cursorKey(id, sub.Upstream)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDevices).DeleteBucket([]byte(id)); err != nil {
			return err
		}
		return deleteStreams(tx, []byte(store.DeviceStreamPrefix(id)))
	})
}

// deleteStreams removes the events of every stream named with prefix, and
// resets their heads to the bare position counter.
func deleteStreams(tx *bbolt.Tx, prefix []byte) error {
	heads := tx.Bucket(bucketHeads)
	var names [][]byte
	c := heads.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		names = append(names, bytes.Clone(k))
	}
	events := tx.Bucket(bucketEvents)
	for _, name := range names {
		h, err := decodeHead(heads.Get(name))
		if err != nil {
			return err
		}
		// Positions are contiguous: delete by key, no cursor needed (and
		// bbolt cursors skip keys when deleting as they go).
		for pos := h.oldest; h.oldest != 0 && pos <= h.last; pos++ {
			if err := events.Delete(eventKey(name, pos)); err != nil {
				return err
			}
		}
		if err := heads.Put(name, head{last: h.last}.encode()); err != nil {
			return err
		}
	}
	return nil
}

// Devices calls fn for the devices subscribed to stream (all when stream
// is ""), reading them in pages between which fn runs.
func (s *Store) Devices(ctx context.Context, stream string, fn func(store.Device) error) error {
	var prefix []byte
	if stream != "" {
		if err := store.CheckName("stream", stream); err != nil {
			return err
		}
		prefix = subKey(stream, "")
	}
	var after []byte // last key seen, exclusive
	for {
		var page []store.Device
		err := s.view(ctx, "devices", func(tx *bbolt.Tx) error {
			var err error
			page, after, err = devicesPageTx(tx, prefix, stream != "", after)
			return err
		})
		if err != nil {
			return err
		}
		for _, d := range page {
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(page) < devicesPage {
			return nil
		}
	}
}

// devicesPageTx reads up to devicesPage devices after the key after, from
// the devices bucket or, when byStream, from the subs index under prefix.
func devicesPageTx(tx *bbolt.Tx, prefix []byte, byStream bool, after []byte) ([]store.Device, []byte, error) {
	devs := tx.Bucket(bucketDevices)
	c := devs.Cursor()
	if byStream {
		c = tx.Bucket(bucketSubs).Cursor()
	}
	k, _ := c.Seek(prefix)
	if after != nil {
		if k, _ = c.Seek(after); bytes.Equal(k, after) {
			k, _ = c.Next()
		}
	}
	var page []store.Device
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(page) < devicesPage; k, _ = c.Next() {
		after = bytes.Clone(k)
		b := devs.Bucket(k[len(prefix):])
		if b == nil {
			continue // an index entry without its device: skip, never fail
		}
		d, err := decodeDevice(b.Get(keyRecord))
		if err != nil {
			return nil, nil, err
		}
		page = append(page, d)
	}
	return page, after, nil
}
