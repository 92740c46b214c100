package redis_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/redis"
)

// The cluster is what proxy needs of several replicas.
var (
	_ proxy.Leader   = (*redis.Cluster)(nil)
	_ proxy.Bus      = (*redis.Cluster)(nil)
	_ proxy.Presence = (*redis.Cluster)(nil)
)

// inbox collects the notices one Listen receives.
type inbox struct {
	mu   sync.Mutex
	got  []store.Notice
	news chan struct{}
}

func listen(t *testing.T, ctx context.Context, m *member, wg *sync.WaitGroup) *inbox {
	in := &inbox{news: make(chan struct{}, 1)}
	wg.Go(func() {
		err := m.c.Listen(ctx, func(n store.Notice) {
			in.mu.Lock()
			in.got = append(in.got, n)
			in.mu.Unlock()
			select {
			case in.news <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Errorf("Listen(%s): %v", m.c.ID(), err)
		}
	})
	return in
}

func (in *inbox) has(n store.Notice) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, g := range in.got {
		if g == n {
			return true
		}
	}
	return false
}

// TestBus: notices reach the other replicas, never their sender.
func TestBus(t *testing.T) {
	url := needRedis(t)
	st := openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	a := startMember(t, st, "a", clusterOpts())
	b := startMember(t, st, "b", clusterOpts())
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	inA, inB := listen(t, ctx, a, &wg), listen(t, ctx, b, &wg)

	// Subscriptions start asynchronously: ping until both hear the other.
	pingA, pingB := store.Notice{Stream: "ping-a"}, store.Notice{Device: "ping-b"}
	waitFor(t, "both subscribed", 5*time.Second, func() bool {
		must(t, a.c.Announce(ctx, pingA))
		must(t, b.c.Announce(ctx, pingB))
		return inB.has(pingA) && inA.has(pingB)
	})
	// Pub/sub keeps the order of one publisher: had a heard its own
	// notice, it would have heard it before b's "after".
	own, after := store.Notice{Stream: "u/own"}, store.Notice{Stream: "u/after"}
	must(t, a.c.Announce(ctx, own))
	must(t, b.c.Announce(ctx, after))
	waitFor(t, "a hears b", 5*time.Second, func() bool { return inA.has(after) })
	waitFor(t, "b hears a", 5*time.Second, func() bool { return inB.has(own) })
	if inA.has(own) || inA.has(pingA) || inB.has(pingB) || inB.has(after) {
		t.Fatalf("a replica heard itself: a got %v, b got %v", inA.got, inB.got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPresence: a device awake on one replica is awake for all until it
// leaves, stays awake while the replica refreshes its mark, and falls
// asleep within the presence TTL when that replica dies.
func TestPresence(t *testing.T) {
	url := needRedis(t)
	st := openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	// Refreshed every 150ms: a stall of 300ms would be needed to lapse.
	const presenceTTL = 450 * time.Millisecond
	opts := redis.ClusterOptions{LeaseTTL: ttl, PresenceTTL: presenceTTL}
	a := startMember(t, st, "a", opts)
	b := startMember(t, st, "b", opts)
	ctx := t.Context()
	awake := func(m *member, dev string) bool {
		ok, err := m.c.Awake(ctx, dev, "news")
		must(t, err)
		return ok
	}
	if awake(b, "d1") {
		t.Fatal("awake before entering")
	}
	leave1, err := a.c.Enter(ctx, "d1", "news")
	must(t, err)
	leave2, err := b.c.Enter(ctx, "d1", "news") // a second stream elsewhere
	must(t, err)
	if !awake(b, "d1") || !awake(a, "d1") {
		t.Fatal("not awake after entering")
	}
	leave1()
	leave1() // idempotent
	if !awake(a, "d1") {
		t.Fatal("asleep while a stream is still open on b")
	}
	leave2()
	if awake(a, "d1") || awake(b, "d1") {
		t.Fatal("awake after leaving")
	}

	// Refreshed while the replica runs: still awake well past the TTL.
	_, err = a.c.Enter(ctx, "d2", "news")
	must(t, err)
	start := time.Now()
	waitFor(t, "two presence TTLs", 2*presenceTTL+time.Second, func() bool {
		if !awake(b, "d2") {
			t.Fatalf("fell asleep %v after entering while the replica runs", time.Since(start))
		}
		return time.Since(start) > 2*presenceTTL
	})
	// The replica dies: its mark lapses.
	a.kill()
	<-a.stopped
	took := waitFor(t, "the dead replica's mark lapses", presenceTTL+time.Second, func() bool { return !awake(b, "d2") })
	t.Logf("presence lapsed %v after the replica died (TTL %v)", took, presenceTTL)
}

// TestClusterClose: Close hands the leases over at once, is idempotent, and
// every later call fails with store.ErrClosed.
func TestClusterClose(t *testing.T) {
	url := needRedis(t)
	st := openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	long := redis.ClusterOptions{LeaseTTL: time.Minute}
	a := startMember(t, st, "a", long)
	ctx := t.Context()
	held, _, err := a.c.Lead(ctx, "u/c")
	must(t, err)
	b := startMember(t, st, "b", long)
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	must(t, a.c.Close(closeCtx))
	if !errors.Is(context.Cause(held), redis.ErrLeaseLost) {
		t.Fatalf("lease context after Close: %v", context.Cause(held))
	}
	<-a.stopped
	// b owns everything now and need not wait a minute for the lease.
	leadCtx, cancelLead := context.WithTimeout(ctx, 5*time.Second)
	defer cancelLead()
	_, release, err := b.c.Lead(leadCtx, "u/c")
	if err != nil {
		t.Fatalf("Lead after the holder closed: %v", err)
	}
	release()

	if err := a.c.Close(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]error{
		"Run":      a.c.Run(ctx),
		"Announce": a.c.Announce(ctx, store.Notice{Stream: "x"}),
		"Listen":   a.c.Listen(ctx, func(store.Notice) {}),
	}
	_, _, calls["Lead"] = a.c.Lead(ctx, "u/c")
	_, calls["Enter"] = a.c.Enter(ctx, "d", "news")
	_, calls["Awake"] = a.c.Awake(ctx, "d", "news")
	for name, err := range calls {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := redis.NewCluster(st, "", redis.ClusterOptions{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("NewCluster without an id: %v", err)
	}
	if _, err := redis.NewCluster(st, "x", redis.ClusterOptions{LeaseTTL: time.Millisecond}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("NewCluster with a 1ms lease: %v", err)
	}
}
