package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/redis"
)

// ttl is the lease and member TTL of the cluster tests: short, so that
// expiry-driven tests stay fast.
const ttl = 300 * time.Millisecond

// member is one Cluster with its Run in a goroutine.
type member struct {
	c       *redis.Cluster
	kill    context.CancelFunc // ends Run without leaving: a death
	stopped chan struct{}      // closed when Run returned
}

// newMember makes a cluster member on st, not yet running (see run); it
// is closed at cleanup.
func newMember(t testing.TB, st *redis.Store, id string, opts redis.ClusterOptions) *member {
	t.Helper()
	c, err := redis.NewCluster(st, id, opts)
	if err != nil {
		t.Fatalf("NewCluster(%s): %v", id, err)
	}
	m := &member{c: c, stopped: make(chan struct{})}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close(%s): %v", id, err)
		}
		if m.kill != nil {
			m.kill()
			<-m.stopped
		}
	})
	return m
}

// run starts the member's Run; kill ends it.
func (m *member) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	m.kill = cancel
	go func() {
		defer close(m.stopped)
		if err := m.c.Run(ctx); err != nil {
			t.Errorf("Run(%s): %v", m.c.ID(), err)
		}
	}()
}

// dead reports whether the member's Run returned.
func (m *member) dead() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

// startMember makes a member and runs it.
func startMember(t testing.TB, st *redis.Store, id string, opts redis.ClusterOptions) *member {
	m := newMember(t, st, id, opts)
	m.run(t)
	return m
}

func clusterOpts() redis.ClusterOptions {
	return redis.ClusterOptions{LeaseTTL: ttl, PresenceTTL: ttl}
}

// holders tracks which lease acquisitions ("<member>#<n>") hold each
// stream, as the lead loops report them.
type holders struct {
	mu   sync.Mutex
	held map[string]map[string]bool // stream -> tags
}

func (h *holders) set(stream, tag string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = map[string]map[string]bool{}
	}
	if h.held[stream] == nil {
		h.held[stream] = map[string]bool{}
	}
	if on {
		h.held[stream][tag] = true
	} else {
		delete(h.held[stream], tag)
	}
}

// member returns the member holding stream, "" unless exactly one holds it.
func (h *holders) member(stream string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held[stream]) != 1 {
		return ""
	}
	for tag := range h.held[stream] {
		id, _, _ := cutLast(tag, '#')
		return id
	}
	return ""
}

func cutLast(s string, sep byte) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// leadLoop is what a gateway does with a stream: Lead, append while the
// lease is held, release, again; each append carries the acquisition's tag.
// A dead member's loop ends without releasing.
func leadLoop(ctx context.Context, t testing.TB, m *member, st *redis.Store, stream string, h *holders) {
	for acq := 0; ; acq++ {
		held, release, err := m.c.Lead(ctx, stream)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("Lead(%s, %s): %v", m.c.ID(), stream, err)
			}
			return
		}
		tag := fmt.Sprintf("%s#%d", m.c.ID(), acq)
		h.set(stream, tag, true)
		tick := time.NewTicker(10 * time.Millisecond)
		for held.Err() == nil {
			select {
			case <-held.Done():
			case <-tick.C:
				ev := store.Event{ID: tag, HasID: true, Type: "test", Data: tag}
				_, err := st.Append(held, stream, []store.Event{ev}, tag)
				if err != nil && held.Err() == nil && !errors.Is(err, redis.ErrLeaseLost) {
					t.Errorf("Append(%s) while holding: %v", stream, err)
				}
			}
		}
		tick.Stop()
		h.set(stream, tag, false)
		if m.dead() {
			return // a dead replica releases nothing
		}
		release()
	}
}

// waitFor polls cond on a ticker until it holds or the deadline passes.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within %v", what, within)
		}
	}
	return time.Since(start)
}

// settled reports whether every stream is held by exactly one member, the
// one every running member's view names.
func settled(h *holders, streams []string, ms []*member) bool {
	for _, s := range streams {
		holder := h.member(s)
		if holder == "" {
			return false
		}
		for _, m := range ms {
			if !m.dead() && m.c.Owner(s) != holder {
				return false
			}
		}
	}
	return true
}

// checkBlocks reads each stream's log: the events of one acquisition form
// one block, never interleaved with another's (fencing), and it returns the
// tags in order.
func checkBlocks(t *testing.T, st *redis.Store, stream string) []string {
	t.Helper()
	var tags []string
	var after uint64
	for {
		p, err := st.Read(context.Background(), stream, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) == 0 {
			break
		}
		for _, e := range p.Events {
			if len(tags) == 0 || tags[len(tags)-1] != e.ID {
				if slices.Contains(tags, e.ID) {
					t.Fatalf("%s: acquisition %s appended again after %s took over: %v", stream, e.ID, tags[len(tags)-1], tags)
				}
				tags = append(tags, e.ID)
			}
		}
		after = p.Events[len(p.Events)-1].Pos
	}
	return tags
}

func streamNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u/s%02d", i)
	}
	return out
}

// TestLeadExclusiveAndRebalance: one member takes every stream; two more
// join and the streams spread to the owners the rendezvous hash names, each
// held by one member at a time, with no append of a former holder after
// the next one's.
func TestLeadExclusiveAndRebalance(t *testing.T) {
	url := needRedis(t)
	st := openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	ms := []*member{
		startMember(t, st, "a", clusterOpts()),
		newMember(t, st, "b", clusterOpts()),
		newMember(t, st, "c", clusterOpts()),
	}
	streams := streamNames(12)
	var h holders
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	for _, m := range ms {
		for _, s := range streams {
			loops.Go(func() { leadLoop(ctx, t, m, st, s, &h) })
		}
	}
	waitFor(t, "a holds every stream", 2*time.Second, func() bool {
		for _, s := range streams {
			if h.member(s) != "a" {
				return false
			}
		}
		return true
	})
	ms[1].run(t)
	ms[2].run(t)
	took := waitFor(t, "streams spread over a, b, c", 3*time.Second, func() bool { return settled(&h, streams, ms) })
	t.Logf("rebalanced over 3 members in %v", took)
	count := map[string]int{}
	for _, s := range streams {
		count[h.member(s)]++
	}
	if len(count) != 3 {
		t.Fatalf("streams per member after rebalancing: %v; want all three to hold some", count)
	}
	// The new holders append.
	waitFor(t, "every holder appends", 2*time.Second, func() bool {
		for _, s := range streams {
			resume, _, err := st.Head(ctx, s)
			if id, _, _ := cutLast(resume, '#'); err != nil || id != h.member(s) {
				return false
			}
		}
		return true
	})
	cancel()
	loops.Wait()
	for _, s := range streams {
		checkBlocks(t, st, s)
	}
}

// TestLeadTakeover kills the member holding a stream (its Run ends, nothing
// is released): another takes it over within the lease TTL and a second.
func TestLeadTakeover(t *testing.T) {
	url := needRedis(t)
	st := openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	ms := []*member{
		startMember(t, st, "a", clusterOpts()),
		startMember(t, st, "b", clusterOpts()),
		startMember(t, st, "c", clusterOpts()),
	}
	streams := streamNames(6)
	var h holders
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	for _, m := range ms {
		for _, s := range streams {
			loops.Go(func() { leadLoop(ctx, t, m, st, s, &h) })
		}
	}
	waitFor(t, "streams settled", 3*time.Second, func() bool { return settled(&h, streams, ms) })
	victim := ms[slices.IndexFunc(ms, func(m *member) bool { return m.c.ID() == h.member(streams[0]) })]
	var mine []string
	for _, s := range streams {
		if h.member(s) == victim.c.ID() {
			mine = append(mine, s)
		}
	}
	victim.kill()
	<-victim.stopped
	took := waitFor(t, "takeover", ttl+time.Second, func() bool {
		for _, s := range mine {
			if id := h.member(s); id == "" || id == victim.c.ID() {
				return false
			}
		}
		return true
	})
	t.Logf("%d streams of %s taken over in %v (lease TTL %v)", len(mine), victim.c.ID(), took, ttl)
	waitFor(t, "streams settled on the survivors", 2*time.Second, func() bool { return settled(&h, streams, ms) })
	cancel()
	loops.Wait()
	for _, s := range streams {
		checkBlocks(t, st, s)
	}
}

// TestLeadFencing: an Append made with a lease that another replica has
// taken fails with ErrLeaseLost and stores nothing; the lease context ends
// at the next renewal.
func TestLeadFencing(t *testing.T) {
	url := needRedis(t)
	prefix := testPrefix(t, url)
	st := openStore(t, url, redis.Options{Prefix: prefix})
	m := startMember(t, st, "a", clusterOpts())
	held, release, err := m.c.Lead(t.Context(), "u/f")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := st.Append(held, "u/f", []store.Event{{Type: "t", Data: "1"}}, "1"); err != nil {
		t.Fatalf("Append while holding: %v", err)
	}
	// Another replica takes the lease (as after this one stalled past TTL).
	raw := rawClient(t, url)
	if err := raw.Set(t.Context(), prefix+"lease:u/f", "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// The value outlives the context's cancellation: fencing is in Redis.
	stale := context.WithoutCancel(held)
	_, err = st.Append(stale, "u/f", []store.Event{{Type: "t", Data: "2"}}, "2")
	if !errors.Is(err, redis.ErrLeaseLost) {
		t.Fatalf("Append with a lost lease: %v, want ErrLeaseLost", err)
	}
	if resume, last, err := st.Head(t.Context(), "u/f"); err != nil || resume != "1" || last != 1 {
		t.Fatalf("Head after a fenced append = %q, %d, %v; want 1, 1", resume, last, err)
	}
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), redis.ErrLeaseLost) {
			t.Fatalf("lease context ended with %v, want ErrLeaseLost", context.Cause(held))
		}
	case <-time.After(ttl + time.Second):
		t.Fatal("the lease context did not end after the lease was taken")
	}
	// Release must not delete the other replica's lease.
	release()
	if v, err := raw.Get(t.Context(), prefix+"lease:u/f").Result(); err != nil || v != "someone-else" {
		t.Fatalf("lease after release = %q, %v", v, err)
	}
}
