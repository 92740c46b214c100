package redis

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// held is one lease this replica holds.
type held struct {
	stream string
	lease  lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once // the key is released once
}

// acquireScript sets the lease to ARGV[1] for ARGV[2] ms unless another
// holds it: free, or held by ARGV[3] (a former lease of this replica that
// it gave up without deleting). Returns -3 when set, else the holder's
// remaining ms (PTTL: -1 for a key without expiry).
var acquireScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or (ARGV[3] ~= '' and cur == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -3
end
return redis.call('PTTL', KEYS[1])
`)

// renewScript extends the lease for ARGV[2] ms if it is still ARGV[1].
var renewScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lease if it is still ARGV[1].
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Lead blocks until this replica owns stream (the rendezvous hash of the
// live members picks it) and holds its lease, then returns a context that
// carries the lease (an Append made with it fails with ErrLeaseLost once the
// lease is gone) and ends, with cause ErrLeaseLost, as soon as a renewal
// fails, the lease is found taken, another member becomes the owner, or Run
// stops; it also ends with ctx. release gives the lease back (at once, so
// the next owner need not wait for it to expire); it is idempotent.
//
// Lead waits without spinning: for a change of the membership, or a third
// of the lease TTL, or until the current holder's lease expires. Errors of
// Redis meanwhile are retried; Lead returns only ctx's error, or
// store.ErrClosed after Close.
func (c *Cluster) Lead(ctx context.Context, stream string) (context.Context, func(), error) {
	if err := store.CheckName("stream", stream); err != nil {
		return nil, nil, err
	}
	poll := c.opts.LeaseTTL / 3
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		if c.isClosed() {
			return nil, nil, store.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c.mu.Lock()
		mine := c.running && owner(stream, c.members) == c.id
		changed := c.changed
		c.mu.Unlock()
		wait := poll
		if mine {
			h, left, err := c.acquire(ctx, stream)
			if h != nil {
				return h.ctx, func() { c.release(h) }, nil
			}
			if err != nil && ctx.Err() == nil {
				c.log.Debug("redis: taking a lease", slog.String(keyStream, stream), slog.Any(keyErr, err))
			}
			if left >= 0 {
				// Try again just after the holder's lease expires.
				wait = min(wait, left+time.Millisecond)
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-c.done:
		case <-changed:
		case <-timer.C:
		}
	}
}

// acquired is acquireScript's answer when the lease was taken.
const acquired = -3

// acquire tries to take stream's lease. It returns the held lease, or how
// long the current holder's lease has left (-1 when unknown).
func (c *Cluster) acquire(ctx context.Context, stream string) (*held, time.Duration, error) {
	c.mu.Lock()
	c.seq++
	token := c.id + "/" + c.nonce + "/" + strconv.FormatUint(c.seq, 10)
	former := c.former[stream]
	c.mu.Unlock()
	l := lease{key: c.st.key("lease:", stream), token: token}
	ttl := c.opts.LeaseTTL.Milliseconds()
	left, err := acquireScript.Run(ctx, c.st.rdb, []string{l.key}, token, ttl, former).Int64()
	if err != nil {
		return nil, -1, c.st.wrap("take lease", err)
	}
	c.mu.Lock()
	if c.former[stream] == former {
		delete(c.former, stream) // taken over, or someone else's now
	}
	c.mu.Unlock()
	if left != acquired {
		if left < 0 {
			return nil, -1, nil // held without expiry: not by a Cluster
		}
		return nil, time.Duration(left) * time.Millisecond, nil
	}
	h := &held{stream: stream, lease: l}
	h.ctx, h.cancel = context.WithCancelCause(withLease(ctx, l))
	// Register it, unless the membership moved or Run stopped meanwhile.
	c.mu.Lock()
	ok := c.running && !c.closed && owner(stream, c.members) == c.id
	if ok {
		c.leases[h] = struct{}{}
	}
	c.mu.Unlock()
	if !ok {
		h.cancel(ErrLeaseLost)
		_ = c.releaseKey(ctx, h)
		return nil, -1, nil
	}
	// A lease whose context ends (ctx did) is no longer renewed.
	context.AfterFunc(h.ctx, func() { c.forget(h) })
	c.log.Debug("redis: lease taken", slog.String(keyStream, stream))
	return h, 0, nil
}

// forget stops renewing h.
func (c *Cluster) forget(h *held) {
	c.mu.Lock()
	delete(c.leases, h)
	c.mu.Unlock()
}

// release ends h and deletes its key if it still holds it.
func (c *Cluster) release(h *held) {
	h.once.Do(func() {
		c.forget(h)
		h.cancel(ErrLeaseLost)
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.LeaseTTL)
		defer cancel()
		if err := c.releaseKey(ctx, h); err != nil {
			c.log.Debug("redis: releasing a lease", slog.String(keyStream, h.stream), slog.Any(keyErr, err))
		}
	})
}

// releaseKey deletes h's lease key if h still holds it.
func (c *Cluster) releaseKey(ctx context.Context, h *held) error {
	err := releaseScript.Run(ctx, c.st.rdb, []string{h.lease.key}, h.lease.token).Err()
	return c.st.wrap("release lease", err)
}

// takeLeasesLocked removes from the held leases those pred selects.
func (c *Cluster) takeLeasesLocked(pred func(*held) bool) []*held {
	var out []*held
	for h := range c.leases {
		if pred(h) {
			out = append(out, h)
			delete(c.leases, h)
		}
	}
	return out
}

// rememberLocked notes the tokens of leases given up without deleting
// their keys: this replica may take them back at once (after a blip of
// Redis, say) rather than wait for them to expire.
func (c *Cluster) rememberLocked(hs []*held) {
	for _, h := range hs {
		c.former[h.stream] = h.lease.token
	}
}

// revoke ends the held leases pred selects, deleting their keys when del
// (the stream goes to another member, which need not wait for expiry).
func (c *Cluster) revoke(ctx context.Context, del bool, pred func(*held) bool) {
	c.mu.Lock()
	hs := c.takeLeasesLocked(pred)
	if !del {
		c.rememberLocked(hs)
	}
	c.mu.Unlock()
	for _, h := range hs {
		h.cancel(ErrLeaseLost)
		if del {
			h.once.Do(func() {
				if err := c.releaseKey(ctx, h); err != nil {
					c.log.Debug("redis: handing a lease over", slog.String(keyStream, h.stream), slog.Any(keyErr, err))
				}
			})
		}
		c.log.Info("redis: lease given up", slog.String(keyStream, h.stream), slog.Bool("handed_over", del))
	}
}

// renew extends every held lease; those found taken end, and all end when
// Redis cannot be asked.
func (c *Cluster) renew(ctx context.Context) error {
	c.mu.Lock()
	hs := make([]*held, 0, len(c.leases))
	for h := range c.leases {
		hs = append(hs, h)
	}
	c.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	ttl := c.opts.LeaseTTL.Milliseconds()
	cmds := make([]*goredis.Cmd, len(hs))
	_, err := c.st.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, h := range hs {
			// EVAL, not EVALSHA: a pipeline cannot fall back when a
			// restarted Redis has forgotten the script.
			cmds[i] = renewScript.Eval(ctx, p, []string{h.lease.key}, h.lease.token, ttl)
		}
		return nil
	})
	if err != nil {
		c.revoke(ctx, false, func(*held) bool { return true })
		return c.st.wrap("renew leases", err)
	}
	lost := map[*held]bool{}
	for i, cmd := range cmds {
		if n, err := cmd.Int(); err != nil || n != 1 {
			lost[hs[i]] = true
		}
	}
	c.revoke(ctx, false, func(h *held) bool { return lost[h] })
	return nil
}
