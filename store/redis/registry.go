package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// devicesPage is how many devices Devices reads per round trip; fn runs
// between them.
const devicesPage = 256

// deviceRecord is the JSON form of a device in its hash (field rec).
type deviceRecord struct {
	ID            string                 `json:"id"`
	TokenHash     []byte                 `json:"token_hash,omitempty"`
	Push          store.PushSubscription `json:"push"`
	PushStatus    string                 `json:"push_status,omitempty"`
	LastPushAt    time.Time              `json:"last_push_at"`
	LastError     string                 `json:"last_error,omitempty"`
	Subscriptions []subRecord            `json:"subscriptions,omitempty"`
	CreatedAt     time.Time              `json:"created_at"`
}

type subRecord struct {
	Upstream string            `json:"upstream"`
	Stream   string            `json:"stream"`
	Headers  map[string]string `json:"headers,omitempty"`
}

func encodeDevice(d *store.Device) (string, error) {
	r := deviceRecord{
		ID: d.ID, TokenHash: d.TokenHash, Push: d.Push,
		PushStatus: d.PushState.Status, LastPushAt: d.PushState.LastPushAt.UTC(), LastError: d.PushState.LastError,
		CreatedAt: d.CreatedAt.UTC(),
	}
	for _, s := range d.Subscriptions {
		r.Subscriptions = append(r.Subscriptions, subRecord(s))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("redis: encode device %q: %w", d.ID, err)
	}
	return string(b), nil
}

func decodeDevice(rec string) (store.Device, error) {
	var r deviceRecord
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return store.Device{}, fmt.Errorf("redis: bad device record: %w", store.ErrNotAStore)
	}
	d := store.Device{
		ID: r.ID, TokenHash: r.TokenHash, Push: r.Push,
		PushState: store.PushState{Status: r.PushStatus, LastPushAt: r.LastPushAt, LastError: r.LastError},
		CreatedAt: r.CreatedAt,
	}
	for _, s := range r.Subscriptions {
		d.Subscriptions = append(d.Subscriptions, store.Subscription(s))
	}
	return d, nil
}

// subArgs lists a device's upstream and stream pairs for a script.
func subArgs(args []any, subs []store.Subscription) []any {
	for _, s := range subs {
		args = append(args, s.Upstream, s.Stream)
	}
	return args
}

func notFound(id string) error {
	return fmt.Errorf("redis: device %q: %w", id, store.ErrNotFound)
}

// CreateDevice stores d; store.ErrExists if its id is taken.
func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	if err := store.CheckDevice(&d); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	rec, err := encodeDevice(&d)
	if err != nil {
		return err
	}
	args := subArgs([]any{s.prefix, d.ID, rec}, d.Subscriptions)
	ok, err := createScript.Run(ctx, s.rdb, []string{s.key("dev:", d.ID), s.key("devices")}, args...).Int()
	if err != nil {
		return s.wrap("create device", err)
	}
	if ok == 0 {
		return fmt.Errorf("redis: device %q: %w", d.ID, store.ErrExists)
	}
	return nil
}

// Device returns the device with id id.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	_, d, err := s.loadDevice(ctx, id)
	return d, err
}

// loadDevice returns the record of a device as stored, and decoded.
func (s *Store) loadDevice(ctx context.Context, id string) (string, store.Device, error) {
	if err := store.CheckName("device", id); err != nil {
		return "", store.Device{}, err
	}
	if err := s.begin(ctx); err != nil {
		return "", store.Device{}, err
	}
	rec, err := s.rdb.HGet(ctx, s.key("dev:", id), "rec").Result()
	if isNil(err) {
		return "", store.Device{}, notFound(id)
	}
	if err != nil {
		return "", store.Device{}, s.wrap("device", err)
	}
	d, err := decodeDevice(rec)
	return rec, d, err
}

// UpdateDevice applies fn to the stored device and stores the result if the
// record did not change meanwhile; else it reads it again and calls fn
// again.
func (s *Store) UpdateDevice(ctx context.Context, id string, fn func(*store.Device) error) (store.Device, error) {
	for range maxRetries {
		old, d, err := s.loadDevice(ctx, id)
		if err != nil {
			return store.Device{}, err
		}
		if err := fn(&d); err != nil {
			return store.Device{}, err
		}
		if d.ID != id {
			return store.Device{}, fmt.Errorf("redis: device %q: id cannot change to %q: %w", id, d.ID, store.ErrInvalid)
		}
		if err := store.CheckDevice(&d); err != nil {
			return store.Device{}, err
		}
		rec, err := encodeDevice(&d)
		if err != nil {
			return store.Device{}, err
		}
		args := subArgs([]any{s.prefix, id, old, rec}, d.Subscriptions)
		res, err := updateScript.Run(ctx, s.rdb, []string{s.key("dev:", id)}, args...).Int()
		switch {
		case err != nil:
			return store.Device{}, s.wrap("update device", err)
		case res == 0:
			return store.Device{}, notFound(id)
		case res > 0:
			return d, nil
		}
	}
	return store.Device{}, fmt.Errorf("redis: update device %q: it kept changing", id)
}

// DeleteDevice removes the device, its cursors and wakes, and the logs of
// its own streams "d/<id>/..." (their heads keep the position counter).
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	if err := store.CheckName("device", id); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	keys := []string{s.key("dev:", id), s.key("devices"), s.key("own:", id)}
	ok, err := deleteScript.Run(ctx, s.rdb, keys, s.prefix, id).Int()
	if err != nil {
		return s.wrap("delete device", err)
	}
	if ok == 0 {
		return notFound(id)
	}
	return nil
}

// Devices calls fn for the devices subscribed to stream (all when stream
// is ""), reading them in pages, in id order, between which fn runs.
func (s *Store) Devices(ctx context.Context, stream string, fn func(store.Device) error) error {
	index := s.key("devices")
	if stream != "" {
		if err := store.CheckName("stream", stream); err != nil {
			return err
		}
		index = s.key("subs:", stream)
	}
	after := "-"
	for {
		page, last, err := s.devicesPage(ctx, index, after)
		if err != nil {
			return err
		}
		for _, d := range page {
			if err := fn(d); err != nil {
				return err
			}
		}
		if last == "" {
			return nil
		}
		after = "(" + last
	}
}

// devicesPage reads up to devicesPage devices of index after the bound
// after (a ZRANGE BYLEX bound); last is the last id of a full page of the
// index, "" at its end.
func (s *Store) devicesPage(ctx context.Context, index, after string) (page []store.Device, last string, err error) {
	if err := s.begin(ctx); err != nil {
		return nil, "", err
	}
	ids, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
		Key: index, Start: after, Stop: "+", ByLex: true, Count: devicesPage,
	}).Result()
	if err != nil {
		return nil, "", s.wrap("devices", err)
	}
	if len(ids) == 0 {
		return nil, "", nil
	}
	cmds := make([]*goredis.StringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, s.key("dev:", id), "rec")
		}
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, "", s.wrap("devices", err)
	}
	page = make([]store.Device, 0, len(ids))
	for _, c := range cmds {
		rec, err := c.Result()
		if isNil(err) {
			continue // deleted since the index was read
		}
		if err != nil {
			return nil, "", s.wrap("devices", err)
		}
		d, err := decodeDevice(rec)
		if err != nil {
			return nil, "", err
		}
		page = append(page, d)
	}
	if len(ids) == devicesPage {
		last = ids[len(ids)-1]
	}
	return page, last, nil
}
