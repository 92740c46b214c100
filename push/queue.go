package push

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wakeline/wakeline/store"
)

// Defaults of QueueOptions.
const (
	DefaultWorkers     = 8
	DefaultCapacity    = 100_000
	DefaultMaxAttempts = 5
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultMaxDelay    = 10 * time.Minute
	DefaultSendTimeout = 30 * time.Second
)

// Log attribute keys of the queue.
const (
	logDevice   = "device"
	logUpstream = "upstream"
	logAttempts = "attempts"
	logErr      = "err"
)

// Job asks for one wake message to a device for an upstream.
type Job struct {
	Device, Upstream string
	Sub              store.PushSubscription
	// Msg is the payload; its Device and Upstream are filled from the Job's
	// when empty.
	Msg Message
	// Enqueued is when the triggering event was received (for the
	// wake-latency histogram); zero means when Enqueue was called.
	Enqueued time.Time
}

// Result is the outcome of a Job.
type Result struct {
	Job Job
	// Err is nil when the push service accepted the message; otherwise the
	// last attempt's error (errors.Is: ErrGone, ErrRejected, ErrTooLarge,
	// ErrRetryable after the last attempt, ErrClosed for a job dropped at
	// Close).
	Err      error
	Attempts int
	// Answered is when the last attempt ended (zero if none was made).
	Answered time.Time
}

// QueueOptions configure a Queue; zero values mean the defaults.
type QueueOptions struct {
	// Workers is the number of concurrent senders. Default DefaultWorkers.
	Workers int
	// Capacity bounds the distinct (device, upstream) keys waiting or being
	// sent. Default DefaultCapacity.
	Capacity int
	// MaxAttempts bounds the sends of one job, retries included. Default
	// DefaultMaxAttempts.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries of 429, 5xx and transport failures; the delay is jittered
	// between half and all of min(MinBackoff*2^(n-1), MaxBackoff) and never
	// shorter than the push service's Retry-After. Defaults DefaultMinBackoff
	// and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxDelay: a retry that would have to wait longer than this (a long
	// Retry-After) is given up at once rather than held. Default
	// DefaultMaxDelay.
	MaxDelay time.Duration
	// SendTimeout bounds one attempt, whatever the Sender's HTTP client
	// does; a timeout is retried. Default DefaultSendTimeout.
	SendTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

type entryState uint8

const (
	stateReady entryState = iota
	stateDelayed
	stateSending
)

// entry is the one piece of work per (device, upstream) key.
type entry struct {
	key      string
	job      Job
	attempts int // sends made for job
	state    entryState
	due      time.Time // when a delayed entry is ready again
	index    int       // position in the delayed heap
	next     *Job      // enqueued while job was being sent
}

// Queue is a bounded work queue of wake messages with a fixed number of
// sender workers. Jobs for the same device and upstream coalesce: while one
// is waiting, a new one replaces its message, so a burst of events yields
// one wake. A job enqueued while the same key is being sent waits for that
// send to end. A retry waiting for its time sits in a heap served by one
// timer goroutine, not in a goroutine of its own.
//
// Its methods are safe for concurrent use.
type Queue struct {
	s        *Sender
	opts     QueueOptions
	onResult func(Result)
	log      *slog.Logger

	ctx    context.Context // cancelled when Close gives up waiting: aborts sends
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // the earliest retry changed
	stop   chan struct{} // closed by Close: the scheduler exits

	mu      sync.Mutex
	cond    *sync.Cond // ready gained an entry, or closing/abort changed
	entries map[string]*entry
	ready   fifo
	delayed delayHeap
	closing bool // Close was called: Enqueue refused, workers drain ready
	abort   bool // Close's context ended: workers stop at once
}

// NewQueue starts a queue sending with s (which must not be nil). onResult,
// if not nil, is called with the outcome of every job, from a worker
// goroutine (or from Close for jobs dropped there), so it must be quick.
func NewQueue(s *Sender, opts QueueOptions, onResult func(Result)) *Queue {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Capacity <= 0 {
		opts.Capacity = DefaultCapacity
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if onResult == nil {
		onResult = func(Result) {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{
		s: s, opts: opts, onResult: onResult, log: log,
		ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), stop: make(chan struct{}),
		entries: map[string]*entry{},
	}
	q.cond = sync.NewCond(&q.mu)
	q.wg.Add(opts.Workers + 1)
	for range opts.Workers {
		go q.worker()
	}
	go q.scheduler()
	return q
}

// Enqueue adds a job, or folds it into the waiting job of the same device
// and upstream (its Msg and Sub replace the waiting ones; the earliest
// Enqueued is kept). It never blocks: ErrQueueFull when Capacity keys are
// already queued, ErrClosed after Close.
func (q *Queue) Enqueue(j Job) error {
	if j.Device == "" || j.Upstream == "" {
		return errors.New("push: enqueue: job without device or upstream")
	}
	if j.Enqueued.IsZero() {
		j.Enqueued = time.Now()
	}
	if j.Msg.Device == "" {
		j.Msg.Device = j.Device
	}
	if j.Msg.Upstream == "" {
		j.Msg.Upstream = j.Upstream
	}
	key := j.Device + "\x00" + j.Upstream
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return ErrClosed
	}
	e := q.entries[key]
	switch {
	case e == nil:
		if len(q.entries) >= q.opts.Capacity {
			return ErrQueueFull
		}
		e = &entry{key: key, job: j, state: stateReady}
		q.entries[key] = e
		q.ready.push(e)
		q.cond.Signal()
	case e.state == stateSending:
		if e.next == nil {
			e.next = &j
		} else {
			merge(e.next, j)
		}
	default:
		merge(&e.job, j)
	}
	return nil
}

func merge(dst *Job, j Job) {
	dst.Msg, dst.Sub = j.Msg, j.Sub
	if j.Enqueued.Before(dst.Enqueued) {
		dst.Enqueued = j.Enqueued
	}
}

// Len is the number of distinct keys waiting or being sent.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

func (q *Queue) worker() {
	defer q.wg.Done()
	for {
		e, job := q.take()
		if e == nil {
			return
		}
		err := q.send(job)
		if res, ok := q.finish(e, job, err, time.Now()); ok {
			q.onResult(res)
		}
	}
}

// send makes one attempt.
func (q *Queue) send(job Job) error {
	ctx, cancel := context.WithTimeout(q.ctx, q.opts.SendTimeout)
	defer cancel()
	err := q.s.Send(ctx, job.Sub, Topic(job.Device, job.Upstream), job.Msg)
	switch {
	case err == nil:
	case q.ctx.Err() != nil:
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrRetryable):
		// Our own deadline, not the caller's: the push service is slow.
		err = fmt.Errorf("%w: %w", ErrRetryable, err)
	}
	return err
}

// take waits for a ready entry and marks it as being sent; nil when the
// worker should exit.
func (q *Queue) take() (*entry, Job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.ready.len() == 0 && !q.closing && !q.abort {
		q.cond.Wait()
	}
	if q.abort || q.ready.len() == 0 {
		return nil, Job{}
	}
	e := q.ready.pop()
	e.state = stateSending
	e.attempts++
	return e, e.job
}

// finish records the outcome of a send: a retry scheduled (no result yet),
// or a result, after which a job that arrived meanwhile becomes ready.
func (q *Queue) finish(e *entry, job Job, err error, now time.Time) (Result, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil && errors.Is(err, ErrRetryable) && !q.closing && e.attempts < q.opts.MaxAttempts {
		if delay := q.backoff(e.attempts, err); delay <= q.opts.MaxDelay {
			if e.next != nil {
				merge(&e.job, *e.next)
				e.next = nil
			}
			e.state, e.due = stateDelayed, now.Add(delay)
			heap.Push(&q.delayed, e)
			if e.index == 0 {
				select {
				case q.kick <- struct{}{}:
				default:
				}
			}
			return Result{}, false
		}
	}
	if err != nil && errors.Is(err, ErrRetryable) {
		q.log.Warn("push: giving up on a wake message", slog.String(logDevice, job.Device),
			slog.String(logUpstream, job.Upstream), slog.Int(logAttempts, e.attempts), slog.Any(logErr, err))
	}
	res := Result{Job: job, Err: err, Attempts: e.attempts, Answered: now}
	if e.next != nil {
		e.job, e.next, e.attempts, e.state = *e.next, nil, 0, stateReady
		q.ready.push(e)
		q.cond.Signal()
	} else {
		delete(q.entries, e.key)
	}
	return res, true
}

// backoff is the delay before the next attempt after attempts sends.
func (q *Queue) backoff(attempts int, err error) time.Duration {
	d := q.opts.MinBackoff
	for i := 1; i < attempts && d < q.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.opts.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > d {
		d = se.RetryAfter
	}
	return d
}

// scheduler moves delayed entries to ready when they are due.
func (q *Queue) scheduler() {
	defer q.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		q.mu.Lock()
		now := time.Now()
		for len(q.delayed) > 0 && !q.delayed[0].due.After(now) {
			e := heap.Pop(&q.delayed).(*entry)
			e.state = stateReady
			q.ready.push(e)
			q.cond.Signal()
		}
		wait := time.Duration(-1)
		if len(q.delayed) > 0 {
			wait = q.delayed[0].due.Sub(now)
		}
		q.mu.Unlock()
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-q.kick:
		case <-q.stop:
			return
		}
	}
}

// Close stops accepting jobs, drops retries that are waiting for their
// time, and lets the workers send the jobs that are ready until ctx ends;
// then sends in flight are cancelled. Every job not sent gets a Result with
// ErrClosed. Close returns when all of the queue's goroutines have exited:
// nil if everything ready was sent, ctx's error otherwise. Later calls
// return ErrClosed.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	q.closing = true
	var dropped []Result
	for _, e := range q.delayed {
		dropped = append(dropped, q.drop(e))
	}
	q.delayed = nil
	q.cond.Broadcast()
	q.mu.Unlock()
	close(q.stop)

	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.mu.Lock()
		q.abort = true
		q.cond.Broadcast()
		q.mu.Unlock()
		q.cancel()
		<-done
		err = fmt.Errorf("push: close: %w", ctx.Err())
	}
	q.cancel()
	q.mu.Lock()
	for _, e := range q.entries {
		dropped = append(dropped, q.drop(e))
	}
	q.ready = fifo{}
	q.mu.Unlock()
	for _, r := range dropped {
		q.onResult(r)
	}
	return err
}

// drop removes an entry that will not be sent; called with mu held.
func (q *Queue) drop(e *entry) Result {
	delete(q.entries, e.key)
	return Result{Job: e.job, Err: ErrClosed, Attempts: e.attempts}
}

// fifo is a queue of entries that reuses its backing array.
type fifo struct {
	items []*entry
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(e *entry) { f.items = append(f.items, e) }

func (f *fifo) pop() *entry {
	e := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head >= 1024 && f.head*2 >= len(f.items):
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return e
}

// delayHeap orders delayed entries by due time.
type delayHeap []*entry

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *delayHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *delayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
