package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"golang.org/x/net/http/httpguts"
)

// conn is one open stream.
type conn struct {
	r       *runner
	reqCtx  context.Context
	cancel  context.CancelCauseFunc
	wd      *watchdog
	body    io.ReadCloser
	dec     *Decoder
	opened  time.Time
	healthy bool // an event was handled
	closed  bool
}

// connect sends the request and checks the answer. It returns the open
// stream, or nil with why not in r.out.
func (r *runner) connect(ctx context.Context) *conn {
	id := ""
	if r.resume != nil {
		id = r.resume()
	}
	r.setState(Connecting, nil)
	if !r.c.Gate.enter(ctx) {
		r.out = outcome{err: ctx.Err()}
		return nil
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	wd := newWatchdog(r.readTimeout(), cancel)
	resp, err := r.do(reqCtx, id)
	r.c.Gate.leave()
	if err != nil {
		r.out = outcome{err: r.cause(reqCtx, err)}
		wd.stop()
		cancel(nil)
		return nil
	}
	if out, ok := checkResponse(resp); !ok {
		r.out = out
		resp.Body.Close()
		wd.stop()
		cancel(nil)
		return nil
	}
	r.setState(Open, nil)
	dec := NewDecoder(resp.Body)
	dec.MaxSize = r.c.MaxSize
	dec.SetLastEventID(id)
	return &conn{r: r, reqCtx: reqCtx, cancel: cancel, wd: wd, body: resp.Body, dec: dec, opened: time.Now()}
}

// next delivers every complete event read so far. It reports whether the
// stream wants more input; once the stream has ended it closes it, leaves
// why in r.out and reports false.
func (cn *conn) next(ctx context.Context) bool {
	for {
		ev, ok, err := cn.dec.parse()
		if err == nil && ok {
			err = cn.deliver(ctx, ev)
		}
		if err != nil {
			cn.r.out = cn.ended(err)
			cn.close()
			return false
		}
		if !ok {
			return true
		}
	}
}

// received records a read from the body.
func (cn *conn) received(n int, err error) {
	if n > 0 {
		cn.wd.touch()
	}
	cn.dec.advance(n, err)
}

// deliver hands one event to the handler. The watchdog pauses meanwhile: a
// slow handler is not a stalled origin. Should the handler panic, the
// connection is closed on the way out.
func (cn *conn) deliver(ctx context.Context, ev Event) error {
	cn.wd.pause()
	returned := false
	defer func() {
		if !returned {
			cn.close()
		}
	}()
	err := cn.r.handle(ctx, ev)
	returned = true
	cn.wd.resume()
	if err != nil {
		return handlerError{err}
	}
	if !cn.healthy {
		// The stream works: later failures start a new streak.
		cn.healthy = true
		cn.r.healthy()
	}
	return nil
}

// ended turns the error that ended the stream into its outcome.
func (cn *conn) ended(err error) outcome {
	out := outcome{healthy: cn.healthy || time.Since(cn.opened) >= HealthyAfter}
	var he handlerError
	switch {
	case err == io.EOF:
		out.err = errEnded
	case errors.As(err, &he):
		out.err = err
	default:
		out.err = cn.r.cause(cn.reqCtx, err)
	}
	return out
}

// handlerError is the handler's refusal of an event.
type handlerError struct{ err error }

func (e handlerError) Error() string { return "upstream: handler: " + e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// close releases the connection and keeps the origin's retry field.
func (cn *conn) close() {
	if cn.closed {
		return
	}
	cn.closed = true
	if rt, ok := cn.dec.Retry(); ok {
		cn.r.originRetry = rt
	}
	cn.body.Close()
	cn.wd.stop()
	cn.cancel(nil)
}

// do sends the request for one connection.
func (r *runner) do(ctx context.Context, id string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.c.URL, nil)
	if err != nil {
		return nil, err
	}
	if r.c.Header != nil {
		req.Header = r.c.Header.Clone()
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if id != "" {
		if httpguts.ValidHeaderFieldValue(id) {
			req.Header.Set("Last-Event-ID", id)
		} else if !r.badIDLogged {
			// Go refuses control characters in headers that the standard
			// allows in ids. Resending from the start beats never connecting.
			r.badIDLogged = true
			r.log.Warn("upstream: last event id cannot be sent as a header, connecting without it", logKeyURL, r.url)
		}
	}
	hc := r.c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	return hc.Do(req)
}
