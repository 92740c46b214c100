// Package redis implements store.Store on Redis: Store is the backend that
// several wakeline replicas share, and Cluster gives them the rest of what
// they must agree on (which replica holds each origin stream, news of
// appended events, which devices are awake anywhere).
//
// Keys, all under Options.Prefix (P):
//
//	P meta             hash: format "wakeline", schema version
//	P vapid            string: the VAPID key pair (JSON), set once (SET NX)
//	P head:<stream>    hash: last (position counter), resume (resume id);
//	                   DeleteDevice keeps last, so positions are never reused
//	P log:<stream>     Redis Stream, entry id "<pos>-0", fields r (received,
//	                   Unix ns), t (type), i ("1"+id or "0"+id), d (data)
//	P ids:<stream>     hash: origin id -> newest kept position carrying it
//	P lease:<stream>   string: the token of the replica holding the stream
//	P dev:<id>         hash: rec (the device, JSON), s:<upstream> stream,
//	                   c:<upstream> cursor, w:<upstream> outstanding wake
//	P devices          zset (score 0): every device id, paged by BYLEX
//	P subs:<stream>    zset (score 0): the devices subscribed to stream
//	P own:<id>         set: the per-device streams "d/<id>/..." appended to
//	P members          zset: replica id scored by its expiry (Redis ms); also
//	                   the pub/sub channel where joins and leaves are told
//	P awake:<dev>/<up> zset: "<replica>:<n>" scored by expiry (Redis ms)
//	P bus              pub/sub channel of Cluster's Announce and Listen
//
// Positions within a stream are contiguous, so the oldest kept position is
// last - XLEN + 1 and pending counts need no scan. Every write that must be
// atomic is one Lua script (scripts.go); reads that must be consistent are
// one MULTI. The rules shared with the bolt backend (store.ReadStart,
// store.Pending, Retention.Outside) are applied in Go, on values read
// atomically, and the script that acts on them checks that nothing moved
// meanwhile.
//
// Durability is what the Redis server is configured for (appendonly yes, and
// appendfsync always for no loss on a power cut); the store does not wait
// for fsync. Positions are exact up to 2^53 (Lua numbers are doubles).
// Redis 6.2 or later (XTRIM MINID).
//
// Redis Cluster is not supported: scripts touch keys of several streams and
// devices, which would need them all in one hash slot. Sentinel is: a URL
// with a master_name parameter names the sentinels (see Open).
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/wakeline/wakeline/store"
)

var _ store.Store = (*Store)(nil)

var (
	// ErrLeaseLost: an Append made with a context from Cluster.Lead found
	// that the lease is no longer this replica's. Nothing was stored.
	ErrLeaseLost = errors.New("redis: lease lost")
	// ErrUnsupportedURL: the URL asks for something this store cannot use
	// (a Redis Cluster, an unknown scheme).
	ErrUnsupportedURL = errors.New("redis: unsupported url")
)

// SchemaVersion is the key layout version this package writes. A prefix
// holding a larger one is refused with store.ErrNewerSchema.
const SchemaVersion = 1

// Defaults of Options.
const (
	DefaultPrefix       = "wakeline:"
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = 2 * time.Second
	DefaultWriteTimeout = 2 * time.Second
)

// maxReadPage caps the events one Read returns, whatever limit asks: a page
// is one Redis reply, held whole in memory.
const maxReadPage = 1024

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Prefix starts every key, so that several gateways (or tests) can share
	// one database. Zero means DefaultPrefix.
	Prefix string
	// DialTimeout, ReadTimeout and WriteTimeout bound every call when Redis
	// does not answer. Zero means the URL's dial_timeout, read_timeout,
	// write_timeout parameters, else the Default... constants. A context's
	// deadline bounds a call too; its cancellation is seen before a call
	// and while it waits for a connection, but a reply already awaited is
	// awaited until ReadTimeout (go-redis does not watch ctx.Done).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the number of connections kept. Zero means the URL's
	// pool_size, else go-redis's default (10 per CPU).
	PoolSize int
}

// Store is a store.Store in Redis. Its methods are safe for concurrent use;
// Close releases the connections.
type Store struct {
	rdb    *goredis.Client
	prefix string
	closed atomic.Bool
}

// Open connects to the Redis at rawURL and checks (or marks) opts.Prefix as
// a wakeline store. Accepted URLs:
//
//	redis://[user:password@]host[:port][/db][?option=value...]
//	rediss://...               the same over TLS
//	unix:///path/to/socket[?db=N]
//	redis[s]://sentinel:26379/db?master_name=NAME[&addr=sentinel2:26379...]
//	                           through Redis Sentinel
//
// with go-redis's URL options (dial_timeout, read_timeout, pool_size, ...).
// Open fails when Redis does not answer, rather than starting on a store
// that cannot be written.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	rdb, err := newClient(rawURL, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{rdb: rdb, prefix: opts.Prefix}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if err := s.checkMeta(ctx); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return s, nil
}

// newClient makes a client from the URL, without talking to Redis.
func newClient(rawURL string, opts Options) (*goredis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", redactURLError(err))
	}
	if u.Query().Has("master_name") {
		fo, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: parse sentinel url: %w", err)
		}
		fo.DialTimeout = pick(opts.DialTimeout, fo.DialTimeout, DefaultDialTimeout)
		fo.ReadTimeout = pick(opts.ReadTimeout, fo.ReadTimeout, DefaultReadTimeout)
		fo.WriteTimeout = pick(opts.WriteTimeout, fo.WriteTimeout, DefaultWriteTimeout)
		fo.PoolSize = pick(opts.PoolSize, fo.PoolSize, 0)
		// No retries: an Append whose reply was lost may have been applied.
		fo.MaxRetries = -1
		fo.DialerRetries = 1
		fo.ContextTimeoutEnabled = true
		return goredis.NewFailoverClient(fo), nil
	}
	if u.Query().Has("addr") {
		return nil, fmt.Errorf("redis: several addresses without master_name (a Redis Cluster?): %w", ErrUnsupportedURL)
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w: %w", ErrUnsupportedURL, err)
	}
	o.DialTimeout = pick(opts.DialTimeout, o.DialTimeout, DefaultDialTimeout)
	o.ReadTimeout = pick(opts.ReadTimeout, o.ReadTimeout, DefaultReadTimeout)
	o.WriteTimeout = pick(opts.WriteTimeout, o.WriteTimeout, DefaultWriteTimeout)
	o.PoolSize = pick(opts.PoolSize, o.PoolSize, 0)
	// No retries: a script whose reply was lost may have been applied, and
	// running an Append twice would store its events twice. Callers retry
	// from what the store says (the resume id).
	o.MaxRetries = -1
	// A refused dial fails the call at once; go-redis's pool then redials
	// in the background.
	o.DialerRetries = 1
	o.ContextTimeoutEnabled = true
	// Maintenance notifications are a Redis Enterprise feature; off, the
	// client sends nothing a plain Redis refuses.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return goredis.NewClient(o), nil
}

// pick returns the first non-zero of an option, the URL's value, a default.
func pick[T comparable](opt, fromURL, def T) T {
	var zero T
	switch {
	case opt != zero:
		return opt
	case fromURL != zero:
		return fromURL
	}
	return def
}

// redactURLError keeps a password out of a URL parse error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkMeta marks a fresh prefix as a wakeline store, or checks that it is
// one this version can read.
func (s *Store) checkMeta(ctx context.Context) error {
	res, err := metaScript.Run(ctx, s.rdb, []string{s.key("meta")}, "wakeline", SchemaVersion).StringSlice()
	if err != nil {
		if strings.Contains(err.Error(), "WRONGTYPE") {
			return fmt.Errorf("redis: %smeta is not a hash: %w", s.prefix, store.ErrNotAStore)
		}
		return s.wrap("open", err)
	}
	if len(res) != 2 || res[0] != "wakeline" {
		return fmt.Errorf("redis: prefix %q holds something else: %w", s.prefix, store.ErrNotAStore)
	}
	v, err := strconv.Atoi(res[1])
	switch {
	case err != nil:
		return fmt.Errorf("redis: prefix %q: bad schema %q: %w", s.prefix, res[1], store.ErrNotAStore)
	case v > SchemaVersion:
		return fmt.Errorf("redis: prefix %q: schema %d: %w", s.prefix, v, store.ErrNewerSchema)
	}
	return nil
}

// Prefix returns the prefix of every key of the store.
func (s *Store) Prefix() string { return s.prefix }

// Ping reports whether Redis answers (for a readiness probe).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap("ping", s.rdb.Ping(ctx).Err())
}

// Close releases the connections. Later calls, Close included, return
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// key names one key of the store.
func (s *Store) key(parts ...string) string {
	return s.prefix + strings.Join(parts, "")
}

// begin is the check every method makes before talking to Redis.
func (s *Store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// Error replies the scripts send on purpose.
const (
	replyLeaseLost = "WAKELINE_LEASE_LOST"
)

// wrap adds the operation to an error of go-redis, and turns a call racing
// Close into store.ErrClosed and a lost lease into ErrLeaseLost.
func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, goredis.ErrClosed) || s.closed.Load():
		return fmt.Errorf("redis: %s: %w", op, store.ErrClosed)
	case strings.Contains(err.Error(), replyLeaseLost):
		return fmt.Errorf("redis: %s: %w", op, ErrLeaseLost)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}
