package upstream

import (
	"math/rand/v2"
	"time"
)

// Backoff defaults.
const (
	// DefaultBackoffInitial is Backoff.Initial when zero.
	DefaultBackoffInitial = time.Second
	// DefaultBackoffMax is Backoff.Max when zero.
	DefaultBackoffMax = 60 * time.Second
)

// State is where a Client's stream is.
type State int

// States of a Client, in the order a stream normally goes through them.
const (
	// Connecting: a request is on its way to the origin.
	Connecting State = iota
	// Open: the origin answered 200 text/event-stream; events flow.
	Open
	// BackingOff: the last connection failed or ended; waiting to retry.
	BackingOff
	// Stopped: Run has returned (context cancelled, or the origin said 204).
	Stopped
)

// String returns "connecting", "open", "backing_off" or "stopped".
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Open:
		return "open"
	case BackingOff:
		return "backing_off"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// Backoff is the reconnect schedule: exponential with full jitter. After n
// failed connections in a row the wait is drawn uniformly from
// [0, min(Max, base·2^(n-1))], where base is Initial, or the origin's retry
// field when that is larger (capped at Max). The origin's retry, when larger
// than Initial, is also a floor: we never come back sooner than it asked.
//
// A failure of the origin's answer itself (a status other than 200, a
// content type other than text/event-stream) takes the slow path: the wait
// is drawn from [Max/2, Max] from the first such failure, and a Retry-After
// header is honoured as a floor up to Max. These failures are usually not
// cured by hammering.
//
// A healthy connection resets the count: one that delivered an event the
// handler accepted, or that stayed open for HealthyAfter.
type Backoff struct {
	// Initial is the first wait's upper bound. Zero means 1s.
	Initial time.Duration
	// Max caps every wait. Zero means 60s; a Max below Initial is Initial.
	Max time.Duration
}

// HealthyAfter is how long a connection must stay open, even without
// events, to count as healthy and reset the backoff.
const HealthyAfter = 30 * time.Second

func (b Backoff) bounds() (initial, maximum time.Duration) {
	initial, maximum = b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maximum <= 0 {
		maximum = DefaultBackoffMax
	}
	return initial, max(initial, maximum)
}

// waitInput is what decides one reconnect wait.
type waitInput struct {
	failures    int           // failed connections in a row, including this one (>= 1)
	slow        bool          // the origin's answer was bad (status, content type)
	originRetry time.Duration // the origin's last retry field, 0 if none
	retryAfter  time.Duration // the Retry-After header of a bad answer, 0 if none
}

// delay computes the wait before the next connection. rnd returns a uniform
// value in [0, n) and is a parameter so tests can pin the jitter.
func (b Backoff) delay(in waitInput, rnd func(n int64) int64) time.Duration {
	initial, maximum := b.bounds()
	base, floor := initial, time.Duration(0)
	if in.originRetry > initial {
		base = min(in.originRetry, maximum)
		floor = base
	}
	var ceiling time.Duration
	if in.slow {
		ceiling = maximum
		floor = max(floor, maximum/2, min(in.retryAfter, maximum))
	} else {
		ceiling = base
		for i := 1; i < in.failures && ceiling < maximum; i++ {
			ceiling *= 2
		}
		ceiling = min(ceiling, maximum)
	}
	if ceiling <= floor {
		return floor
	}
	return floor + time.Duration(rnd(int64(ceiling-floor)+1))
}

// jitter is the production source for delay.
func jitter(n int64) int64 { return rand.Int64N(n) }
