package push_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/store"
)

// collect returns an onResult that feeds a channel large enough for a test.
func collect() (func(push.Result), chan push.Result) {
	c := make(chan push.Result, 10_000)
	return func(r push.Result) { c <- r }, c
}

func closeQueue(t testing.TB, q *push.Queue) {
	t.Helper()
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func job(device string, sub store.PushSubscription) push.Job {
	return push.Job{Device: device, Upstream: "news", Sub: sub, Msg: push.Message{Pending: 1, LastEventID: "1"}}
}

// hold makes the only worker of a queue busy until the returned func is
// called.
func hold(t *testing.T, e *env, q *push.Queue) (release func()) {
	t.Helper()
	blocker := e.sub(t)
	gate := make(chan struct{})
	e.script(t, blocker, pushtest.Answer{Wait: gate})
	if err := q.Enqueue(job("blocker", blocker)); err != nil {
		t.Fatal(err)
	}
	if d := e.next(t); d.Msg.Device != "blocker" {
		t.Fatalf("first request from %q", d.Msg.Device)
	}
	return func() { close(gate) }
}

func TestQueueDelivers(t *testing.T) {
	e := newEnv(t)
	on, results := collect()
	q := push.NewQueue(e.sender, push.QueueOptions{Workers: 4}, on)
	sub := e.sub(t)
	enqueued := time.Now().Add(-time.Second)
	for i := range 20 {
		j := job("dev"+strconv.Itoa(i), sub)
		j.Enqueued = enqueued
		if err := q.Enqueue(j); err != nil {
			t.Fatal(err)
		}
	}
	closeQueue(t, q) // drains what is ready
	for range 20 {
		r := <-results
		if r.Err != nil || r.Attempts != 1 || !r.Job.Enqueued.Equal(enqueued) || r.Answered.Before(enqueued) {
			t.Fatalf("result %+v", r)
		}
	}
	for range 20 {
		d := e.next(t)
		if d.Status != 201 || d.Msg.Type != push.WakeType || d.Msg.Upstream != "news" ||
			d.Header.Get("Topic") != push.Topic(d.Msg.Device, "news") {
			t.Fatalf("delivery %d %+v topic %q", d.Status, d.Msg, d.Header.Get("Topic"))
		}
	}
	e.none(t)
}

func TestQueueCoalescesBurst(t *testing.T) {
	e := newEnv(t)
	on, results := collect()
	q := push.NewQueue(e.sender, push.QueueOptions{Workers: 1}, on)
	release := hold(t, e, q)
	sub := e.sub(t)
	first := time.Now().Add(-time.Minute)
	for i := 1; i <= 100; i++ {
		j := job("dev1", sub)
		j.Msg.Pending, j.Msg.LastEventID = int64(i), strconv.Itoa(i)
		j.Enqueued = first.Add(time.Duration(i) * time.Millisecond)
		if err := q.Enqueue(j); err != nil {
			t.Fatal(err)
		}
	}
	if n := q.Len(); n != 2 {
		t.Fatalf("Len %d, want 2 (blocker and dev1)", n)
	}
	release()
	if r := <-results; r.Job.Device != "blocker" || r.Err != nil {
		t.Fatalf("result %+v", r)
	}
	r := <-results
	if r.Err != nil || r.Attempts != 1 || r.Job.Msg.Pending != 100 || !r.Job.Enqueued.Equal(first.Add(time.Millisecond)) {
		t.Fatalf("coalesced result %+v: want the last message and the first Enqueued", r)
	}
	if d := e.next(t); d.Msg.Device != "dev1" || d.Msg.Pending != 100 || d.Msg.LastEventID != "100" {
		t.Fatalf("delivered %s", d.Payload)
	}
	closeQueue(t, q)
	e.none(t) // one message for the burst
}

func TestQueueEnqueueWhileSending(t *testing.T) {
	e := newEnv(t)
	on, results := collect()
	q := push.NewQueue(e.sender, push.QueueOptions{Workers: 2}, on)
	sub := e.sub(t)
	gate := make(chan struct{})
	e.script(t, sub, pushtest.Answer{Wait: gate})
	if err := q.Enqueue(job("dev1", sub)); err != nil {
		t.Fatal(err)
	}
	e.next(t) // the first message is being sent
	for i := 2; i <= 3; i++ {
		j := job("dev1", sub)
		j.Msg.Pending = int64(i)
		if err := q.Enqueue(j); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	// The second worker must not send dev1 while the first still is: the
	// follow-up goes out after the first answer.
	if r := <-results; r.Err != nil || r.Job.Msg.Pending != 1 {
		t.Fatalf("first %+v", r)
	}
	if r := <-results; r.Err != nil || r.Job.Msg.Pending != 3 {
		t.Fatalf("second %+v", r)
	}
	if d := e.next(t); d.Msg.Pending != 3 {
		t.Fatalf("follow-up %s", d.Payload)
	}
	closeQueue(t, q)
	e.none(t)
}

func TestQueueFullAndClosed(t *testing.T) {
	e := newEnv(t)
	on, results := collect()
	q := push.NewQueue(e.sender, push.QueueOptions{Workers: 1, Capacity: 2}, on)
	release := hold(t, e, q)
	sub := e.sub(t)
	if err := q.Enqueue(job("a", sub)); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(job("b", sub)); !errors.Is(err, push.ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	if err := q.Enqueue(job("a", sub)); err != nil {
		t.Fatalf("coalescing into a full queue: %v", err)
	}
	if err := q.Enqueue(push.Job{Device: "x", Sub: sub}); err == nil {
		t.Fatal("job without upstream accepted")
	}
	release()
	closeQueue(t, q)
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	if err := q.Enqueue(job("c", sub)); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}
	if err := q.Close(context.Background()); !errors.Is(err, push.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestQueueCloseGivesUpAtDeadline(t *testing.T) {
	e := newEnv(t)
	on, results := collect()
	q := push.NewQueue(e.sender, push.QueueOptions{Workers: 1}, on)
	sub := e.sub(t)
	e.script(t, sub, pushtest.Answer{Hang: true})
	if err := q.Enqueue(job("hung", sub)); err != nil {
		t.Fatal(err)
	}
	e.next(t)
	for _, d := range []string{"a", "b", "hung"} {
		if err := q.Enqueue(job(d, sub)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v, want context.Canceled", err)
	}
	got := map[string]push.Result{}
	for range 4 {
		r := <-results
		if !errors.Is(r.Err, push.ErrClosed) {
			t.Fatalf("result %+v, want ErrClosed", r)
		}
		got[r.Job.Device+strconv.Itoa(r.Attempts)] = r
	}
	for _, k := range []string{"hung1", "hung0", "a0", "b0"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no result %s in %v", k, got)
		}
	}
}

// inBubble runs f with a queue on an in-process push service, in a synctest
// bubble: retries wait on the fake clock.
func inBubble(t *testing.T, opts push.QueueOptions, f func(t *testing.T, e *env, q *push.Queue, results chan push.Result)) {
	synctest.Test(t, func(t *testing.T) {
		e := newInProcessEnv(t)
		on, results := collect()
		q := push.NewQueue(e.sender, opts, on)
		f(t, e, q, results)
		if err := q.Close(context.Background()); err != nil && !errors.Is(err, push.ErrClosed) {
			t.Fatal(err)
		}
	})
}

func TestQueueRetryHonoursRetryAfter(t *testing.T) {
	inBubble(t, push.QueueOptions{Workers: 1}, func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
		sub := e.sub(t)
		e.script(t, sub, pushtest.Answer{Status: 429, RetryAfter: "30"})
		start := time.Now()
		if err := q.Enqueue(job("d", sub)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(29*time.Second + 999*time.Millisecond) // fake time
		synctest.Wait()
		if n := e.srv.Stats().Requests; n != 1 || len(results) != 0 {
			t.Fatalf("%d requests, %d results before Retry-After", n, len(results))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		r := <-results
		if r.Err != nil || r.Attempts != 2 || r.Answered.Sub(start) != 30*time.Second {
			t.Fatalf("result %+v after %v", r, r.Answered.Sub(start))
		}
	})
}

func TestQueueRetriesAreBounded(t *testing.T) {
	inBubble(t, push.QueueOptions{Workers: 1, MaxAttempts: 5, MinBackoff: time.Second, MaxBackoff: 4 * time.Second},
		func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
			sub := e.sub(t)
			for range 6 {
				e.script(t, sub, pushtest.Answer{Status: 500})
			}
			start := time.Now()
			if err := q.Enqueue(job("d", sub)); err != nil {
				t.Fatal(err)
			}
			r := <-results
			if !errors.Is(r.Err, push.ErrRetryable) || r.Attempts != 5 {
				t.Fatalf("result %+v", r)
			}
			// Backoff 1s, 2s, 4s, 4s, each jittered to [half, all].
			if el := r.Answered.Sub(start); el < 5500*time.Millisecond || el > 11*time.Second {
				t.Fatalf("gave up after %v", el)
			}
			if n := e.srv.Stats().Requests; n != 5 {
				t.Fatalf("%d requests", n)
			}
		})
}

func TestQueueGivesUpOnLongRetryAfter(t *testing.T) {
	inBubble(t, push.QueueOptions{MaxDelay: time.Hour}, func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
		sub := e.sub(t)
		e.script(t, sub, pushtest.Answer{Status: 503, RetryAfter: "7200"})
		if err := q.Enqueue(job("d", sub)); err != nil {
			t.Fatal(err)
		}
		if r := <-results; !errors.Is(r.Err, push.ErrRetryable) || r.Attempts != 1 {
			t.Fatalf("result %+v", r)
		}
	})
}

func TestQueuePermanentAnswersAreNotRetried(t *testing.T) {
	inBubble(t, push.QueueOptions{}, func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
		for _, tc := range []struct {
			answers []pushtest.Answer
			is      error
			n       int
		}{
			{[]pushtest.Answer{{Status: 410}}, push.ErrGone, 1},
			{[]pushtest.Answer{{Status: 503}, {Status: 404}}, push.ErrGone, 2},
			{[]pushtest.Answer{{Status: 403}}, push.ErrRejected, 1},
			{[]pushtest.Answer{{Status: 413}, {Status: 413}}, push.ErrTooLarge, 1},
		} {
			sub := e.sub(t)
			e.script(t, sub, tc.answers...)
			if err := q.Enqueue(job("d", sub)); err != nil {
				t.Fatal(err)
			}
			if r := <-results; !errors.Is(r.Err, tc.is) || r.Attempts != tc.n {
				t.Fatalf("answers %v: result %+v", tc.answers, r)
			}
		}
	})
}

func TestQueueRetryDoesNotHoldAWorker(t *testing.T) {
	inBubble(t, push.QueueOptions{Workers: 1}, func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
		slow, fast := e.sub(t), e.sub(t)
		e.script(t, slow, pushtest.Answer{Status: 429, RetryAfter: "60"})
		start := time.Now()
		if err := q.Enqueue(job("slow", slow)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // slow waits for its retry
		if err := q.Enqueue(job("fast", fast)); err != nil {
			t.Fatal(err)
		}
		j := job("slow", slow)
		j.Msg.Pending = 7 // folds into the waiting retry
		if err := q.Enqueue(j); err != nil {
			t.Fatal(err)
		}
		if r := <-results; r.Job.Device != "fast" || r.Err != nil || r.Answered != start {
			t.Fatalf("first result %+v", r)
		}
		r := <-results
		if r.Job.Device != "slow" || r.Err != nil || r.Attempts != 2 || r.Answered.Sub(start) != time.Minute || r.Job.Msg.Pending != 7 {
			t.Fatalf("second result %+v", r)
		}
	})
}

func TestQueueCloseDropsWaitingRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newInProcessEnv(t)
		on, results := collect()
		q := push.NewQueue(e.sender, push.QueueOptions{}, on)
		sub := e.sub(t)
		e.script(t, sub, pushtest.Answer{Status: 429, RetryAfter: "30"})
		if err := q.Enqueue(job("d", sub)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		start := time.Now()
		closeQueue(t, q)
		if time.Since(start) != 0 {
			t.Fatal("Close waited for a retry")
		}
		if r := <-results; !errors.Is(r.Err, push.ErrClosed) || r.Attempts != 1 {
			t.Fatalf("result %+v", r)
		}
	})
}

// Waiting retries cost heap entries, not goroutines.
func TestQueueGoroutinesAreBounded(t *testing.T) {
	const jobs, workers = 300, 4
	synctest.Test(t, func(t *testing.T) {
		e := newInProcessEnv(t)
		on, results := collect()
		sub := e.sub(t)
		for range jobs {
			e.script(t, sub, pushtest.Answer{Status: 429, RetryAfter: "600"})
		}
		before := runtime.NumGoroutine()
		q := push.NewQueue(e.sender, push.QueueOptions{Workers: workers}, on)
		for i := range jobs {
			if err := q.Enqueue(job("dev"+strconv.Itoa(i), sub)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := e.srv.Stats().Requests; n != jobs {
			t.Fatalf("%d requests", n)
		}
		if g := runtime.NumGoroutine() - before; g > workers+1 {
			t.Fatalf("%d goroutines for %d waiting retries", g, jobs)
		}
		if q.Len() != jobs {
			t.Fatalf("Len %d", q.Len())
		}
		closeQueue(t, q)
		for range jobs {
			if r := <-results; !errors.Is(r.Err, push.ErrClosed) {
				t.Fatalf("result %+v", r)
			}
		}
	})
}

func TestQueueTimesOutHangingPushService(t *testing.T) {
	inBubble(t, push.QueueOptions{Workers: 1, MaxAttempts: 2, SendTimeout: 10 * time.Second, MinBackoff: time.Second, MaxBackoff: time.Second},
		func(t *testing.T, e *env, q *push.Queue, results chan push.Result) {
			sub := e.sub(t)
			e.script(t, sub, pushtest.Answer{Hang: true}, pushtest.Answer{Hang: true})
			start := time.Now()
			if err := q.Enqueue(job("d", sub)); err != nil {
				t.Fatal(err)
			}
			r := <-results
			if !errors.Is(r.Err, push.ErrRetryable) || !errors.Is(r.Err, context.DeadlineExceeded) || r.Attempts != 2 {
				t.Fatalf("result %+v", r)
			}
			if el := r.Answered.Sub(start); el < 20500*time.Millisecond || el > 21*time.Second {
				t.Fatalf("gave up after %v", el)
			}
		})
}
