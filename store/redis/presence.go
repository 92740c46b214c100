package redis

import (
	"context"
	"log/slog"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// presenceEntry is one open stream of a device on this replica.
type presenceEntry struct {
	key, member string
	once        sync.Once
}

// enterScript marks ARGV[1] present until ARGV[2] ms from Redis's clock,
// drops the lapsed entries, and keeps the key at least that long. KEYS:
// the device and upstream's zset.
var enterScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`)

// awakeScript counts the entries that have not lapsed.
var awakeScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
`)

// presenceKey names the zset of a device and upstream; device ids hold no
// '/', so the name is unambiguous.
func (c *Cluster) presenceKey(device, upstream string) string {
	return c.st.key("awake:", device, "/", upstream)
}

// Enter marks the device awake for upstream on this replica until leave is
// called, refreshing the mark while Run runs; if this replica dies, the
// mark lapses within PresenceTTL. leave is idempotent and bounded in time.
func (c *Cluster) Enter(ctx context.Context, device, upstream string) (func(), error) {
	if err := c.checkPresence(ctx, device, upstream); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.seq++
	p := &presenceEntry{key: c.presenceKey(device, upstream), member: c.id + ":" + c.nonce + ":" + strconv.FormatUint(c.seq, 10)}
	c.mu.Unlock()
	ttl := c.opts.PresenceTTL.Milliseconds()
	if err := enterScript.Run(ctx, c.st.rdb, []string{p.key}, p.member, ttl).Err(); err != nil {
		return nil, c.st.wrap("enter", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.leave(p)
		return nil, store.ErrClosed
	}
	c.presence[p] = struct{}{}
	c.mu.Unlock()
	return func() { c.leave(p) }, nil
}

// leave removes p here and in Redis.
func (c *Cluster) leave(p *presenceEntry) {
	p.once.Do(func() {
		// A refresh in flight could add p back after the ZREM: wait for it.
		c.refreshMu.Lock()
		c.mu.Lock()
		_, mine := c.presence[p]
		delete(c.presence, p)
		closed := c.closed
		c.mu.Unlock()
		c.refreshMu.Unlock()
		if closed && !mine {
			return // Close removed it
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.LeaseTTL)
		defer cancel()
		if err := c.st.rdb.ZRem(ctx, p.key, p.member).Err(); err != nil {
			c.log.Debug("redis: leaving presence", slog.Any(keyErr, err))
		}
	})
}

// Awake reports whether the device has a stream open for upstream on any
// replica whose mark has not lapsed.
func (c *Cluster) Awake(ctx context.Context, device, upstream string) (bool, error) {
	if err := c.checkPresence(ctx, device, upstream); err != nil {
		return false, err
	}
	n, err := awakeScript.Run(ctx, c.st.rdb, []string{c.presenceKey(device, upstream)}).Int()
	if err != nil {
		return false, c.st.wrap("awake", err)
	}
	return n > 0, nil
}

func (c *Cluster) checkPresence(ctx context.Context, device, upstream string) error {
	if c.isClosed() {
		return store.ErrClosed
	}
	if err := store.CheckName("device", device); err != nil {
		return err
	}
	if err := store.CheckName("upstream", upstream); err != nil {
		return err
	}
	return c.st.begin(ctx)
}

// refreshPresence renews every mark of this replica, in one pipeline.
func (c *Cluster) refreshPresence(ctx context.Context) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	ps := make([]*presenceEntry, 0, len(c.presence))
	for p := range c.presence {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	ttl := c.opts.PresenceTTL.Milliseconds()
	_, err := c.st.rdb.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		for _, p := range ps {
			enterScript.Eval(ctx, pl, []string{p.key}, p.member, ttl)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		c.log.Warn("redis: refreshing presence", slog.Any(keyErr, err))
	}
}
