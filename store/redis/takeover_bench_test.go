package redis_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store/redis"
)

// BenchmarkTakeover kills the member holding a stream (its Run ends, it
// releases nothing: a SIGKILL as far as Redis can tell), b.N times, and
// reports how long the next holder took, from the kill to its Lead
// returning: median-ms and max-ms. Three members run at every kill.
func BenchmarkTakeover(b *testing.B) {
	for _, ttl := range []time.Duration{300 * time.Millisecond, 5 * time.Second} {
		b.Run("ttl="+ttl.String(), func(b *testing.B) { benchTakeover(b, ttl) })
	}
}

func benchTakeover(b *testing.B, ttl time.Duration) {
	url := needRedis(b)
	st := openStore(b, url, redis.Options{Prefix: testPrefix(b, url)})
	opts := redis.ClusterOptions{LeaseTTL: ttl}
	var h holders
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	defer loops.Wait()
	defer cancel()
	var ms []*member
	add := func() {
		m := startMember(b, st, fmt.Sprintf("m%d", len(ms)), opts)
		ms = append(ms, m)
		loops.Go(func() { leadLoop(ctx, b, m, st, "u/f", &h) })
	}
	for range 3 {
		add()
	}
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		waitFor(b, "a holder", 2*ttl+time.Second, func() bool { return h.member("u/f") != "" })
		victim := ms[slices.IndexFunc(ms, func(m *member) bool { return m.c.ID() == h.member("u/f") })]
		victim.kill()
		<-victim.stopped
		took = append(took, waitFor(b, "takeover", 2*ttl+time.Second, func() bool {
			id := h.member("u/f")
			return id != "" && id != victim.c.ID()
		}))
		add()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "median-ms")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(0, "ns/op")
}
