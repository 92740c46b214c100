package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/redis"
	"github.com/wakeline/wakeline/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// redisURL is the Redis the tests share: WAKELINE_TEST_REDIS, as host:port
// or a URL.
func redisURL() string {
	addr := os.Getenv("WAKELINE_TEST_REDIS")
	switch {
	case addr == "":
		return "redis://127.0.0.1:6379/0"
	case strings.Contains(addr, "://"):
		return addr
	}
	return "redis://" + addr + "/0"
}

// needRedis skips the test when nothing answers at the test Redis.
func needRedis(t testing.TB) string {
	t.Helper()
	u := redisURL()
	o, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatalf("WAKELINE_TEST_REDIS=%q: %v", u, err)
	}
	c, err := net.DialTimeout(o.Network, o.Addr, time.Second)
	if err != nil {
		t.Skipf("no Redis answers at %s (set WAKELINE_TEST_REDIS): %v", o.Addr, err)
	}
	c.Close()
	return u
}

// testPrefix is a fresh key prefix whose keys are deleted when the test
// ends.
func testPrefix(t testing.TB, url string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "wltest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { dropKeys(t, url, prefix) })
	return prefix
}

// rawClient is a plain client of the test Redis, closed at cleanup.
func rawClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// dropKeys deletes every key under prefix.
func dropKeys(t testing.TB, url, prefix string) {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Error(err)
		return
	}
	rdb := goredis.NewClient(o)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
	var keys []string
	flush := func() {
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				t.Errorf("cleanup of %s: %v", prefix, err)
			}
			keys = keys[:0]
		}
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup of %s: %v", prefix, err)
	}
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func openStore(t testing.TB, url string, opts redis.Options) *redis.Store {
	t.Helper()
	s, err := redis.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	url := needRedis(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, url, redis.Options{Prefix: testPrefix(t, url)})
	})
}

func TestReopen(t *testing.T) {
	url := needRedis(t)
	base := testPrefix(t, url)
	storetest.RunReopen(t, func(t *testing.T, place string) store.Store {
		return openStore(t, url, redis.Options{Prefix: base + place + ":"})
	})
}

// TestCrash kills a process appending to Redis at random instants: every
// script is atomic, so the checks hold whatever the instant.
func TestCrash(t *testing.T) {
	url := needRedis(t)
	places := map[string]bool{}
	t.Cleanup(func() {
		for p := range places {
			dropKeys(t, url, "wltest:crash:"+p+":")
		}
	})
	storetest.RunCrash(t, func(place string) (store.Store, error) {
		places[place] = true
		return redis.Open(context.Background(), url, redis.Options{Prefix: "wltest:crash:" + place + ":"})
	})
}

func BenchmarkStore(b *testing.B) {
	url := needRedis(b)
	storetest.Bench(b, func(b *testing.B) store.Store {
		return openStore(b, url, redis.Options{Prefix: testPrefix(b, url)})
	})
}

// TestOpen checks what Open refuses: URLs it cannot use, a prefix holding
// something else or a newer schema, and a Redis that does not answer.
func TestOpen(t *testing.T) {
	url := needRedis(t)
	ctx := t.Context()
	for _, u := range []string{
		"http://127.0.0.1:6379",
		"redis://127.0.0.1:6379/0?addr=127.0.0.1:6380",
		"redis://127.0.0.1:6379/0?no_such_option=1",
	} {
		if _, err := redis.Open(ctx, u, redis.Options{}); !errors.Is(err, redis.ErrUnsupportedURL) {
			t.Errorf("Open(%s): %v, want ErrUnsupportedURL", u, err)
		}
	}
	if _, err := redis.Open(ctx, "redis://user:s3cret@[::1", redis.Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a bad URL with a password: %v", err)
	}

	raw := rawClient(t, url)
	other := testPrefix(t, url)
	must(t, raw.Set(ctx, other+"meta", "not a hash", 0).Err())
	if _, err := redis.Open(ctx, url, redis.Options{Prefix: other}); !errors.Is(err, store.ErrNotAStore) {
		t.Errorf("Open of a prefix holding a string: %v, want ErrNotAStore", err)
	}
	foreign := testPrefix(t, url)
	must(t, raw.HSet(ctx, foreign+"meta", "format", "something else").Err())
	if _, err := redis.Open(ctx, url, redis.Options{Prefix: foreign}); !errors.Is(err, store.ErrNotAStore) {
		t.Errorf("Open of a foreign prefix: %v, want ErrNotAStore", err)
	}
	newer := testPrefix(t, url)
	must(t, raw.HSet(ctx, newer+"meta", "format", "wakeline", "schema", redis.SchemaVersion+1).Err())
	if _, err := redis.Open(ctx, url, redis.Options{Prefix: newer}); !errors.Is(err, store.ErrNewerSchema) {
		t.Errorf("Open of a newer schema: %v, want ErrNewerSchema", err)
	}

	// Nothing listens: Open fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	if _, err := redis.Open(ctx, "redis://"+addr+"/0", redis.Options{DialTimeout: 200 * time.Millisecond}); err == nil {
		t.Error("Open with nothing listening succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open with nothing listening took %v", took)
	}

	if s := openStore(t, url, redis.Options{Prefix: newer + "x:"}); s.Prefix() != newer+"x:" {
		t.Errorf("Prefix() = %q", s.Prefix())
	}
}
