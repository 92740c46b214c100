package upstream

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Backoff arithmetic, with the jitter pinned to its extremes.
func TestBackoffDelay(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	s := time.Second
	tests := []struct {
		name     string
		b        Backoff
		in       waitInput
		min, max time.Duration
	}{
		{"defaults, first failure", Backoff{}, waitInput{failures: 1}, 0, s},
		{"doubling", Backoff{}, waitInput{failures: 3}, 0, 4 * s},
		{"capped at Max", Backoff{}, waitInput{failures: 10}, 0, 60 * s},
		{"no overflow", Backoff{}, waitInput{failures: 1 << 30}, 0, 60 * s},
		{"Max below Initial", Backoff{Initial: 5 * s, Max: s}, waitInput{failures: 4}, 0, 5 * s},
		{"origin retry is base and floor", Backoff{}, waitInput{failures: 1, originRetry: 5 * s}, 5 * s, 5 * s},
		{"origin retry doubles", Backoff{}, waitInput{failures: 2, originRetry: 5 * s}, 5 * s, 10 * s},
		{"origin retry below Initial ignored", Backoff{}, waitInput{failures: 1, originRetry: s / 2}, 0, s},
		{"origin retry capped at Max", Backoff{}, waitInput{failures: 1, originRetry: time.Hour}, 60 * s, 60 * s},
		{"slow path", Backoff{}, waitInput{failures: 1, slow: true}, 30 * s, 60 * s},
		{"slow path Retry-After", Backoff{}, waitInput{failures: 1, slow: true, retryAfter: 45 * s}, 45 * s, 60 * s},
		{"slow path Retry-After capped", Backoff{}, waitInput{failures: 1, slow: true, retryAfter: time.Hour}, 60 * s, 60 * s},
		{"tiny", Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}, waitInput{failures: 5}, 0, 2 * time.Millisecond},
	}
	for _, tc := range tests {
		lo, hi := tc.b.delay(tc.in, lowest), tc.b.delay(tc.in, highest)
		if lo != tc.min || hi != tc.max {
			t.Errorf("%s: delay in [%v, %v], want [%v, %v]", tc.name, lo, hi, tc.min, tc.max)
		}
		for range 100 {
			if d := tc.b.delay(tc.in, jitter); d < tc.min || d > tc.max {
				t.Fatalf("%s: random delay %v out of [%v, %v]", tc.name, d, tc.min, tc.max)
			}
		}
	}
}

// The watchdog, on a fake clock.
func TestWatchdog(t *testing.T) {
	const timeout = 10 * time.Second
	run := func(t *testing.T, f func(w *watchdog, ctx context.Context)) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			w := newWatchdog(timeout, cancel)
			defer w.stop()
			f(w, ctx)
		})
	}
	t.Run("fires after timeout", func(t *testing.T) {
		run(t, func(w *watchdog, ctx context.Context) {
			time.Sleep(timeout - time.Millisecond)
			if ctx.Err() != nil {
				t.Fatal("fired early")
			}
			time.Sleep(2 * time.Millisecond)
			synctest.Wait()
			if !errors.Is(context.Cause(ctx), ErrStalled) {
				t.Fatalf("cause %v", context.Cause(ctx))
			}
		})
	})
	t.Run("activity postpones", func(t *testing.T) {
		run(t, func(w *watchdog, ctx context.Context) {
			for range 5 {
				time.Sleep(timeout / 2)
				w.touch()
			}
			synctest.Wait()
			if ctx.Err() != nil {
				t.Fatal("fired despite activity")
			}
			time.Sleep(timeout)
			synctest.Wait()
			if ctx.Err() == nil {
				t.Fatal("did not fire after activity stopped")
			}
		})
	})
	t.Run("busy handler is not a stall", func(t *testing.T) {
		run(t, func(w *watchdog, ctx context.Context) {
			w.pause()
			time.Sleep(5 * timeout)
			synctest.Wait()
			if ctx.Err() != nil {
				t.Fatal("fired while the handler ran")
			}
			w.resume()
			time.Sleep(timeout - time.Millisecond)
			synctest.Wait()
			if ctx.Err() != nil {
				t.Fatal("resume did not restart the clock")
			}
		})
	})
	t.Run("stopped does nothing", func(t *testing.T) {
		run(t, func(w *watchdog, ctx context.Context) {
			w.stop()
			time.Sleep(2 * timeout)
			synctest.Wait()
			if ctx.Err() != nil {
				t.Fatal("fired after stop")
			}
		})
	})
	if newWatchdog(-1, nil) != nil || newWatchdog(0, nil) != nil {
		t.Fatal("disabled watchdog not nil")
	}
}

// appendUTF8 against the table of the Unicode standard's "U+FFFD
// substitution of maximal subparts" examples (Table 3-8 and friends).
func TestAppendUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc",
		"\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64": "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd",
		"\xC0\xAF\xE0\x80\xBF\xF0\x81\x82\x41":                 "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFDA",
		"\xED\xA0\x80\xED\xBF\xBF\xED\xAF\x41":                 "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFDA",
		"\xF4\x91\x92\x93\xFF\x41\x80\xBF\x42":                 "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFDA\uFFFD\uFFFDB",
		"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41":                 "\uFFFD\uFFFD\uFFFD\uFFFDA",
		"\xF0\x9F\x98":                                         "\uFFFD",
		"\xF0\x9F\x98\x80":                                     "😀",
	} {
		if got := string(appendUTF8(nil, []byte(in))); got != want {
			t.Errorf("appendUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}
