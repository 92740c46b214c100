package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultReadTimeout is Client.ReadTimeout when zero. It is longer than the
// 15-60s heartbeats origins commonly send, so only a dead stream trips it.
const DefaultReadTimeout = 90 * time.Second

// maxErrorBody is how much of a non-stream answer is read (and dropped) so
// that an HTTP/1.1 connection can be reused for the retry.
const maxErrorBody = 4 << 10

// Log attribute keys.
const (
	logKeyURL         = "url"
	logKeyStatus      = "status"
	logKeyContentType = "content_type"
	logKeyError       = "error"
	logKeyRetryIn     = "retry_in"
	logKeyFailures    = "failures"
)

// Client holds one origin stream for as long as Run runs: it connects,
// hands every event to the caller, and reconnects with backoff, sending the
// Last-Event-ID the caller gives it, until its context is cancelled or the
// origin answers 204.
//
// Configure it through the fields before calling Run and do not change them
// while it runs. Run may be called again after it returns.
type Client struct {
	// URL is the origin's event stream: an absolute http or https URL.
	URL string
	// Header holds extra request headers (Authorization, say). They are
	// never logged. Accept, Cache-Control and Last-Event-ID are set by the
	// client and override any given here.
	Header http.Header
	// HTTPClient sends the requests. Nil means a client shared by every
	// Client in the process, made by NewHTTPClient(nil): HTTP/2 where the
	// origin offers it, connection reuse, no overall timeout. Redirects are
	// followed as the http.Client's CheckRedirect says.
	HTTPClient *http.Client
	// Backoff is the reconnect schedule; its zero value is documented on
	// Backoff.
	Backoff Backoff
	// ReadTimeout drops a connection on which no byte (not even a comment)
	// arrived for this long, including the wait for the response headers.
	// Zero means DefaultReadTimeout; negative disables the check.
	ReadTimeout time.Duration
	// MaxSize bounds a line and an event's data; zero means DefaultMaxSize.
	// A longer one drops the connection with ErrTooLarge.
	MaxSize int
	// Logger receives connection failures, once per streak of failures, with
	// the URL stripped of credentials and query. Nil discards.
	Logger *slog.Logger
	// Gate, if set, bounds how many connections are being set up at once
	// across every Client sharing it: a slot is held from sending the
	// request until the origin's answer (or failure). When an HTTP/2 origin
	// is at its stream limit on every connection, net/http dials a new
	// connection for each waiting request, so thousands of streams started
	// together would each make one; through a Gate only a few do. Nil means
	// no bound.
	Gate *Gate
	// OnState, if set, is called on every state change, from Run's
	// goroutine, with the error that caused it (nil for Connecting and
	// Open; nil or ErrNoContent for Stopped). It must not block for long.
	OnState func(s State, err error)
}

// ResponseError is an origin answer that is not an event stream. It wraps
// ErrBadStatus or ErrBadContentType.
type ResponseError struct {
	// StatusCode is the answer's status.
	StatusCode int
	// ContentType is the answer's Content-Type header.
	ContentType string
	// URL is the URL that answered (after redirects), without credentials
	// or query.
	URL string
	// RetryAfter is the answer's Retry-After, 0 if none or unparsable.
	RetryAfter time.Duration
}

func (e *ResponseError) Error() string {
	if errors.Is(e, ErrBadContentType) {
		return fmt.Sprintf("upstream: %s answered content type %q, not text/event-stream", e.URL, e.ContentType)
	}
	return fmt.Sprintf("upstream: %s answered status %d", e.URL, e.StatusCode)
}

// Unwrap returns ErrBadContentType for a 200 answer, else ErrBadStatus.
func (e *ResponseError) Unwrap() error {
	if e.StatusCode == http.StatusOK {
		return ErrBadContentType
	}
	return ErrBadStatus
}

// Run holds the stream until ctx is cancelled, then returns nil, or until
// the origin answers 204, then returns ErrNoContent. It returns an error at
// once if URL is not an absolute http or https URL (wrapping ErrBadURL) or
// handle is nil.
//
// Before each connection it calls resume (if not nil) for the Last-Event-ID
// to send; "" sends none. The caller answers with the id of the last event
// it durably kept, so what it failed to keep is fetched again. For each
// dispatched event Run calls handle synchronously, with ctx; an error from
// handle drops the connection and counts as a failure for the backoff.
//
// Run starts no goroutine that outlives it; the HTTP client's connection
// goroutines belong to its transport. While a stream is idle, Run's
// goroutine waits in a read only a few small frames below Run, so that over
// HTTP/2 its stack shrinks back to 4 KiB whatever handle used (HTTP/1.1's
// own read path is too deep for that): call Run from a shallow goroutine (a
// function literal given to errgroup.Group.Go, say) to keep it so.
func (c *Client) Run(ctx context.Context, resume func() string, handle func(context.Context, Event) error) error {
	r, err := c.newRunner(resume, handle)
	if err != nil {
		return err
	}
	for {
		if cn := r.connect(ctx); cn != nil {
			// The read loop is here, in Run itself, and everything else
			// is in helpers: the frames above a blocked read are what an
			// idle stream keeps on its stack.
			for cn.next(ctx) {
				n, err := cn.body.Read(cn.dec.readSpace())
				cn.received(n, err)
			}
		}
		if stop, err := r.after(ctx); stop {
			return err
		}
	}
}

func (c *Client) newRunner(resume func() string, handle func(context.Context, Event) error) (*runner, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream: parse url: %w", ErrBadURL)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: url %q: %w", redactURL(u), ErrBadURL)
	}
	if handle == nil {
		return nil, errors.New("upstream: Run needs a handle func")
	}
	r := &runner{c: c, url: redactURL(u), log: c.Logger, resume: resume, handle: handle}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// runner is the state of one Run.
type runner struct {
	c           *Client
	url         string // for logs and errors: no credentials, no query
	log         *slog.Logger
	resume      func() string
	handle      func(context.Context, Event) error
	failures    int           // failed connections in a row
	logged      bool          // this failure streak was logged
	originRetry time.Duration // the origin's last retry field
	badIDLogged bool
	out         outcome // how the last connection ended
}

// outcome is how one connection ended.
type outcome struct {
	err        error
	slow       bool // the answer was not a stream: slow-path backoff
	retryAfter time.Duration
	healthy    bool
}

// after handles the end of a connection (r.out): it stops Run, or backs
// off. It reports whether Run should return, and what.
func (r *runner) after(ctx context.Context) (bool, error) {
	out := r.out
	if ctx.Err() != nil {
		r.setState(Stopped, nil)
		return true, nil
	}
	if errors.Is(out.err, ErrNoContent) {
		r.log.Info("upstream: origin answered 204, stopping", logKeyURL, r.url)
		r.setState(Stopped, ErrNoContent)
		return true, ErrNoContent
	}
	if out.healthy {
		r.healthy()
	}
	r.failures++
	wait := r.c.Backoff.delay(waitInput{
		failures:    r.failures,
		slow:        out.slow,
		originRetry: r.originRetry,
		retryAfter:  out.retryAfter,
	}, jitter)
	r.report(out, wait)
	r.setState(BackingOff, out.err)
	if !sleep(ctx, wait) {
		r.setState(Stopped, nil)
		return true, nil
	}
	return false, nil
}

// sleep waits d or until ctx is done, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *runner) setState(s State, err error) {
	if r.c.OnState != nil {
		r.c.OnState(s, err)
	}
}

// healthy ends a failure streak.
func (r *runner) healthy() {
	if r.logged {
		r.log.Info("upstream: origin stream is back", logKeyURL, r.url, logKeyFailures, r.failures)
	}
	r.failures, r.logged = 0, false
}

// report logs a connection's end: the first failure of a streak as a
// warning, the rest (and normal ends of healthy streams) at debug level.
func (r *runner) report(out outcome, wait time.Duration) {
	attrs := []any{logKeyURL, r.url, logKeyRetryIn, wait, logKeyFailures, r.failures}
	var re *ResponseError
	if errors.As(out.err, &re) {
		attrs = append(attrs, logKeyStatus, re.StatusCode, logKeyContentType, re.ContentType)
	} else {
		attrs = append(attrs, logKeyError, out.err.Error())
	}
	if r.logged || (out.healthy && errors.Is(out.err, errEnded)) {
		r.log.Debug("upstream: reconnecting to origin", attrs...)
		return
	}
	r.logged = true
	r.log.Warn("upstream: origin stream failed, retrying", attrs...)
}

func (r *runner) readTimeout() time.Duration {
	if r.c.ReadTimeout == 0 {
		return DefaultReadTimeout
	}
	return r.c.ReadTimeout
}

// cause turns a transport or read error into the error Run reports: the
// watchdog's ErrStalled when it cut the connection, and never the raw
// request URL, whose query may carry a token.
func (r *runner) cause(reqCtx context.Context, err error) error {
	if errors.Is(context.Cause(reqCtx), ErrStalled) {
		return fmt.Errorf("upstream: %s sent nothing for %v: %w", r.url, r.readTimeout(), ErrStalled)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("upstream: %s: %w", r.url, err)
}

// checkResponse tells a stream from everything else.
func checkResponse(resp *http.Response) (outcome, bool) {
	if resp.StatusCode == http.StatusNoContent {
		return outcome{err: ErrNoContent}, false
	}
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode == http.StatusOK && isEventStream(ct) {
		return outcome{}, true
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxErrorBody)
	re := &ResponseError{
		StatusCode:  resp.StatusCode,
		ContentType: ct,
		URL:         redactURL(resp.Request.URL),
		RetryAfter:  retryAfter(resp.Header.Get("Retry-After")),
	}
	return outcome{err: re, slow: true, retryAfter: re.RetryAfter}, false
}

func isEventStream(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// redactURL returns u without credentials, query or fragment, for logs.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	safe := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return safe.String()
}
