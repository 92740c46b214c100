package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// Defaults of ClusterOptions.
const (
	DefaultLeaseTTL    = 5 * time.Second
	DefaultPresenceTTL = 30 * time.Second
	// minTTL is the shortest TTL accepted: Redis expires keys to the
	// millisecond, and a renewal must fit in a third of the TTL.
	minTTL = 30 * time.Millisecond
)

// Log attribute keys.
const (
	keyReplica = "replica"
	keyStream  = "stream"
	keyErr     = "err"
)

// ClusterOptions tune a Cluster. The zero value is ready to use.
type ClusterOptions struct {
	// LeaseTTL is how long a stream's lease outlives the last renewal of its
	// holder; a lease is renewed every LeaseTTL/3. When a holder dies,
	// another replica takes the stream over about LeaseTTL later. Zero means
	// DefaultLeaseTTL; at least 30ms.
	LeaseTTL time.Duration
	// MemberTTL is how long a replica stays a member after its last
	// heartbeat. Heartbeats and lease renewals share one beat, every third
	// of the shorter of the two TTLs. Zero means LeaseTTL.
	MemberTTL time.Duration
	// PresenceTTL is how long a device stays awake after the replica
	// holding its stream stops refreshing it (every PresenceTTL/3): the
	// replica died. Zero means DefaultPresenceTTL.
	PresenceTTL time.Duration
	// Logger receives the cluster's events. Nil means no logging.
	Logger *slog.Logger
}

func (o *ClusterOptions) defaults() error {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.MemberTTL == 0 {
		o.MemberTTL = o.LeaseTTL
	}
	if o.PresenceTTL == 0 {
		o.PresenceTTL = DefaultPresenceTTL
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"LeaseTTL", o.LeaseTTL}, {"MemberTTL", o.MemberTTL}, {"PresenceTTL", o.PresenceTTL}} {
		if f.v < minTTL {
			return fmt.Errorf("redis: cluster option %s is %v, want at least %v: %w", f.name, f.v, minTTL, store.ErrInvalid)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Cluster is what several replicas sharing a Store agree on through Redis:
// which replica holds each origin stream (Lead), news of appended events
// and changed devices (Announce, Listen), and which devices have a stream
// open anywhere (Enter, Awake). It implements proxy's Leader, Bus and
// Presence.
//
// Run keeps the replica a member, renews its leases and refreshes its
// presence entries; Close leaves the cluster, handing the streams over at
// once. All methods are safe for concurrent use.
type Cluster struct {
	st    *Store
	id    string // the replica id: its name in the membership
	nonce string // this instance: tokens, bus messages, presence entries
	opts  ClusterOptions
	log   *slog.Logger

	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	// refreshMu is held while presence marks are refreshed, so that a
	// leave never races a refresh that would add its mark back.
	refreshMu sync.Mutex

	mu       sync.Mutex
	closed   bool
	running  bool
	members  []string      // live members, sorted; nil while not running
	changed  chan struct{} // closed and replaced when members change
	leases   map[*held]struct{}
	former   map[string]string // stream -> token of a lease given up, key kept
	presence map[*presenceEntry]struct{}
	seq      uint64
}

// NewCluster makes the cluster member replicaID on st. Nothing happens in
// Redis until Run.
func NewCluster(st *Store, replicaID string, opts ClusterOptions) (*Cluster, error) {
	if st == nil {
		return nil, fmt.Errorf("redis: new cluster: nil store: %w", store.ErrInvalid)
	}
	if err := store.CheckName("replica", replicaID); err != nil {
		return nil, err
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return &Cluster{
		st: st, id: replicaID, nonce: hex.EncodeToString(b), opts: opts,
		log:      opts.Logger.With(slog.String(keyReplica, replicaID)),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		leases:   map[*held]struct{}{},
		former:   map[string]string{},
		presence: map[*presenceEntry]struct{}{},
	}, nil
}

// ID returns the replica id.
func (c *Cluster) ID() string { return c.id }

// Owner returns the member that should hold stream as this replica sees the
// membership now ("" while Run is not running).
func (c *Cluster) Owner(stream string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return owner(stream, c.members)
}

// beat is how often the replica heartbeats and renews its leases.
func (c *Cluster) beat() time.Duration {
	return min(c.opts.LeaseTTL, c.opts.MemberTTL) / 3
}

// Run makes the replica a member and keeps it one, renewing its leases and
// presence entries, until ctx ends or Close is called. It returns nil then,
// or store.ErrClosed when called after Close. Once Run returns, every lease
// context it handed out ends. When ctx ends (rather than Close), the keys
// are left to expire, as if the replica had died; Close hands over at once.
// Run may be called again after it returned.
func (c *Cluster) Run(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return store.ErrClosed
	case c.running:
		c.mu.Unlock()
		return fmt.Errorf("redis: cluster %q is already running: %w", c.id, store.ErrInvalid)
	}
	c.running = true
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	defer c.stopped()

	beat := time.NewTicker(c.beat())
	defer beat.Stop()
	fresh := time.NewTicker(c.opts.PresenceTTL / 3)
	defer fresh.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	// Members that join or leave say so on a channel: look at once.
	ps := c.st.rdb.Subscribe(ctx, c.st.key("members"))
	defer ps.Close()
	news := ps.Channel(goredis.WithChannelSize(1))
	healthy := true
	for {
		next, err := c.heartbeat(ctx, c.id)
		if err == nil {
			err = c.renew(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if healthy != (err == nil) {
			healthy = err == nil
			if healthy {
				c.log.Info("redis: cluster heartbeat back")
			} else {
				c.log.Warn("redis: cluster heartbeat failed, leases dropped", slog.Any(keyErr, err))
			}
		}
		if next > 0 {
			expiry.Reset(next)
		}
		if !c.idle(ctx, beat.C, fresh.C, news, expiry) {
			return nil
		}
	}
}

// idle waits for the next beat, meanwhile refreshing presence entries and
// looking at the membership when a member's entry expires or another
// member says it changed. It returns false when Run must stop.
func (c *Cluster) idle(ctx context.Context, beat, fresh <-chan time.Time, news <-chan *goredis.Message, expiry *time.Timer) bool {
	for {
		select {
		case <-news:
			if next, err := c.heartbeat(ctx, ""); err == nil && next > 0 {
				expiry.Reset(next)
			}
		case <-ctx.Done():
			return false
		case <-c.done:
			return false
		case <-beat:
			return true
		case <-expiry.C:
			// A member's entry expires now: was it renewed?
			if next, err := c.heartbeat(ctx, ""); err == nil && next > 0 {
				expiry.Reset(next)
			}
		case <-fresh:
			c.refreshPresence(ctx)
		}
	}
}

// stopped ends what Run kept alive: lease contexts end (their keys stay
// until they expire), and Lead waits until the replica runs again.
func (c *Cluster) stopped() {
	c.mu.Lock()
	c.running = false
	c.setMembersLocked(nil)
	hs := c.takeLeasesLocked(func(*held) bool { return true })
	c.rememberLocked(hs)
	c.mu.Unlock()
	for _, h := range hs {
		h.cancel(errStopped)
	}
}

// errStopped is the cause of lease contexts that end with Run.
var errStopped = fmt.Errorf("redis: cluster stopped: %w", ErrLeaseLost)

// Close leaves the cluster: it stops Run, releases every lease this replica
// holds so that the next owners take over at once, removes it from the
// membership and its presence entries, within ctx. Later calls return
// store.ErrClosed, as do Lead, Announce, Listen, Enter and Awake.
func (c *Cluster) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return store.ErrClosed
	}
	c.closed = true
	close(c.done)
	hs := c.takeLeasesLocked(func(*held) bool { return true })
	ps := make([]*presenceEntry, 0, len(c.presence))
	for p := range c.presence {
		ps = append(ps, p)
	}
	clear(c.presence)
	c.mu.Unlock()
	c.wg.Wait()
	var errs []error
	for _, h := range hs {
		h.cancel(ErrLeaseLost)
		errs = append(errs, c.releaseKey(ctx, h))
	}
	for _, p := range ps {
		errs = append(errs, c.st.wrap("leave presence", c.st.rdb.ZRem(ctx, p.key, p.member).Err()))
	}
	leave := leaveScript.Run(ctx, c.st.rdb, []string{c.st.key("members")}, c.id, c.st.key("members"))
	errs = append(errs, c.st.wrap("leave cluster", leave.Err()))
	return errors.Join(errs...)
}

// isClosed reports whether Close was called.
func (c *Cluster) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// heartbeatScript adds (when ARGV[1] is set) the replica to the members,
// expiring ARGV[2] ms from Redis's clock, drops the expired ones, tells
// channel ARGV[3] when the membership changed, and returns the clock (ms)
// then the members and their expiries.
var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
if ARGV[1] ~= '' then
  changed = redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
end
changed = changed + redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if changed > 0 then redis.call('PUBLISH', ARGV[3], 'changed') end
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
table.insert(m, 1, string.format('%d', now))
return m
`)

// leaveScript removes the replica ARGV[1] from the members and tells
// channel ARGV[2].
var leaveScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) > 0 then redis.call('PUBLISH', ARGV[2], 'changed') end
return 1
`)

// heartbeat renews self (when set) in the membership and reads it; next is
// when the first other member's entry expires (0: none).
func (c *Cluster) heartbeat(ctx context.Context, self string) (next time.Duration, err error) {
	ttl := c.opts.MemberTTL.Milliseconds()
	res, err := heartbeatScript.Run(ctx, c.st.rdb, []string{c.st.key("members")}, self, ttl, c.st.key("members")).StringSlice()
	if err != nil {
		c.revoke(ctx, false, func(*held) bool { return true })
		return 0, c.st.wrap("heartbeat", err)
	}
	if len(res)%2 != 1 {
		return 0, fmt.Errorf("redis: heartbeat: bad reply: %w", store.ErrNotAStore)
	}
	now, _ := strconv.ParseInt(res[0], 10, 64)
	members := make([]string, 0, len(res)/2)
	var first int64
	for j := 1; j+1 < len(res); j += 2 {
		members = append(members, res[j])
		exp, _ := strconv.ParseInt(res[j+1], 10, 64)
		if res[j] != c.id && (first == 0 || exp < first) {
			first = exp
		}
	}
	slices.Sort(members)
	c.mu.Lock()
	if !c.running || c.closed {
		c.mu.Unlock()
		return 0, nil
	}
	c.setMembersLocked(members)
	c.mu.Unlock()
	// Leases of streams another member now owns go to it at once.
	c.revoke(ctx, true, func(h *held) bool { return owner(h.stream, members) != c.id })
	if first == 0 {
		return 0, nil
	}
	return time.Duration(first-now+1) * time.Millisecond, nil
}

// setMembersLocked replaces the membership view and wakes Lead's waiters
// when it changed.
func (c *Cluster) setMembersLocked(members []string) {
	if slices.Equal(members, c.members) && (members == nil) == (c.members == nil) {
		return
	}
	if !slices.Equal(members, c.members) {
		c.log.Info("redis: cluster members", slog.Any("members", members))
	}
	c.members = members
	close(c.changed)
	c.changed = make(chan struct{})
}

// owner picks the member that should hold stream by rendezvous hashing:
// the highest hash of member and stream wins, so that a member joining or
// leaving moves only the streams it wins or held.
func owner(stream string, members []string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		if s := hrw(m, stream); best == "" || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// hrw is FNV-1a of member NUL stream, mixed (splitmix64's finalizer) so that
// names differing in one byte spread.
func hrw(member, stream string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(stream))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
