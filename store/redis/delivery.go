package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

func noSub(device, upstream string) error {
	return fmt.Errorf("redis: device %q, upstream %q: %w", device, upstream, store.ErrNotFound)
}

// checkSub validates the names of a delivery call.
func (s *Store) checkSub(ctx context.Context, device, upstream string) error {
	if err := store.CheckName("device", device); err != nil {
		return err
	}
	if err := store.CheckName("upstream", upstream); err != nil {
		return err
	}
	return s.begin(ctx)
}

// SetCursor moves the device's cursor for upstream forward to pos.
func (s *Store) SetCursor(ctx context.Context, device, upstream string, pos uint64) error {
	if err := s.checkSub(ctx, device, upstream); err != nil {
		return err
	}
	ok, err := setCursorScript.Run(ctx, s.rdb, []string{s.key("dev:", device)}, upstream, strconv.FormatUint(pos, 10)).Int()
	if err != nil {
		return s.wrap("set cursor", err)
	}
	if ok == 0 {
		return noSub(device, upstream)
	}
	return nil
}

var _ store.CursorBatcher = (*Store)(nil)

// SetCursors runs SetCursor's script for every update in one pipeline: one
// round trip. The script skips a device or upstream that is gone.
func (s *Store) SetCursors(ctx context.Context, updates []store.CursorUpdate) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	for _, u := range updates {
		if err := store.CheckName("device", u.Device); err != nil {
			return err
		}
		if err := store.CheckName("upstream", u.Upstream); err != nil {
			return err
		}
	}
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, u := range updates {
			// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
			setCursorScript.Eval(ctx, p, []string{s.key("dev:", u.Device)}, u.Upstream, strconv.FormatUint(u.Pos, 10))
		}
		return nil
	})
	return s.wrap("set cursors", err)
}

// Cursor returns the device's cursor for upstream and the kept events after
// it, from one script reading three fields and a stream's length.
func (s *Store) Cursor(ctx context.Context, device, upstream string) (uint64, int64, error) {
	if err := s.checkSub(ctx, device, upstream); err != nil {
		return 0, 0, err
	}
	res, err := cursorScript.Run(ctx, s.rdb, []string{s.key("dev:", device)}, s.prefix, upstream).Slice()
	if isNil(err) {
		return 0, 0, noSub(device, upstream)
	}
	if err != nil {
		return 0, 0, s.wrap("cursor", err)
	}
	if len(res) != 3 {
		return 0, 0, fmt.Errorf("redis: cursor: bad reply: %w", store.ErrNotAStore)
	}
	pos, err1 := strconv.ParseUint(fmt.Sprint(res[0]), 10, 64)
	last, err2 := strconv.ParseUint(fmt.Sprint(res[1]), 10, 64)
	n, ok := res[2].(int64)
	if err1 != nil || err2 != nil || !ok || uint64(n) > last {
		return 0, 0, fmt.Errorf("redis: cursor: bad reply: %w", store.ErrNotAStore)
	}
	var oldest uint64
	if n > 0 {
		oldest = last - uint64(n) + 1
	}
	return pos, store.Pending(oldest, last, pos), nil
}

// wakeTime formats a time as claimScript compares it.
func wakeTime(t time.Time) (sec, nsec string) {
	return strconv.FormatInt(t.Unix(), 10), strconv.Itoa(t.Nanosecond())
}

// ClaimWake claims the wake of the device for upstream unless one claimed
// less than rewakeAfter before now is outstanding.
func (s *Store) ClaimWake(ctx context.Context, device, upstream string, now time.Time, rewakeAfter time.Duration) (bool, error) {
	if err := s.checkSub(ctx, device, upstream); err != nil {
		return false, err
	}
	ns, nn := wakeTime(now)
	ts, tn := wakeTime(now.Add(-rewakeAfter))
	res, err := claimScript.Run(ctx, s.rdb, []string{s.key("dev:", device)}, upstream, ns, nn, ts, tn).Int()
	if err != nil {
		return false, s.wrap("claim wake", err)
	}
	if res < 0 {
		return false, noSub(device, upstream)
	}
	return res == 1, nil
}

// ClearWake ends the outstanding wake of the device for upstream.
func (s *Store) ClearWake(ctx context.Context, device, upstream string) error {
	if err := s.checkSub(ctx, device, upstream); err != nil {
		return err
	}
	ok, err := clearScript.Run(ctx, s.rdb, []string{s.key("dev:", device)}, upstream).Int()
	if err != nil {
		return s.wrap("clear wake", err)
	}
	if ok == 0 {
		return noSub(device, upstream)
	}
	return nil
}

type vapidRecord struct {
	Public  string `json:"public"`
	Private string `json:"private"`
}

// VAPIDKeys returns the stored key pair, storing generate's first with SET
// NX: when replicas race, the first to store wins and all return its pair.
func (s *Store) VAPIDKeys(ctx context.Context, generate func() (store.VAPIDKeys, error)) (store.VAPIDKeys, error) {
	if err := s.begin(ctx); err != nil {
		return store.VAPIDKeys{}, err
	}
	key := s.key("vapid")
	load := func() (store.VAPIDKeys, bool, error) {
		v, err := s.rdb.Get(ctx, key).Result()
		if isNil(err) {
			return store.VAPIDKeys{}, false, nil
		}
		if err != nil {
			return store.VAPIDKeys{}, false, s.wrap("vapid keys", err)
		}
		var r vapidRecord
		if err := json.Unmarshal([]byte(v), &r); err != nil || r.Public == "" {
			return store.VAPIDKeys{}, false, fmt.Errorf("redis: bad vapid record: %w", store.ErrNotAStore)
		}
		return store.VAPIDKeys(r), true, nil
	}
	if k, ok, err := load(); err != nil || ok {
		return k, err
	}
	fresh, err := generate()
	if err != nil {
		return store.VAPIDKeys{}, fmt.Errorf("redis: generate vapid keys: %w", err)
	}
	if fresh.Public == "" || fresh.Private == "" {
		return store.VAPIDKeys{}, fmt.Errorf("redis: generated vapid keys are empty: %w", store.ErrInvalid)
	}
	rec, err := json.Marshal(vapidRecord(fresh))
	if err != nil {
		return store.VAPIDKeys{}, err
	}
	set, err := s.rdb.SetArgs(ctx, key, rec, goredis.SetArgs{Mode: "NX"}).Result()
	if err != nil && !isNil(err) {
		return store.VAPIDKeys{}, s.wrap("vapid keys", err)
	}
	if set == "OK" {
		return fresh, nil
	}
	k, ok, err := load()
	if err == nil && !ok {
		err = fmt.Errorf("redis: vapid keys vanished: %w", store.ErrNotAStore)
	}
	return k, err
}
