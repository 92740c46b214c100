package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wakeline/wakeline/api"
	"github.com/wakeline/wakeline/store"
)

// Handler serves the REST API, the device streams, health and metrics.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/devices", g.handleDevices)
	mux.HandleFunc("/v1/devices/{id}", g.handleDevice)
	mux.HandleFunc("/v1/devices/{id}/sleep", g.handleSleep)
	mux.HandleFunc("/v1/devices/{id}/streams/{upstream}", g.serveStream)
	mux.HandleFunc("/v1/vapid", g.handleVAPID)
	mux.HandleFunc("/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		w.Header().Set("Content-Type", api.ContentType)
		_, _ = w.Write(api.Spec)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", g.handleReady)
	mux.Handle("/metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeError(w, errNotFound) })
	return withCORS(g.cfg.Stream.CORSOrigins, mux)
}

func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	if !g.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
		return
	}
	if _, _, err := g.st.Head(r.Context(), "readyz"); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (g *Gateway) handleVAPID(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"public_key": g.vapidPublic})
}

func (g *Gateway) handleDevices(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	if !g.regAuth.allows(bearer(r, false)) {
		writeError(w, errUnauthorized)
		return
	}
	var req deviceRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	st, e := g.register(r.Context(), req)
	if e != nil {
		g.writeErr(w, e)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (g *Gateway) handleDevice(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodPatch, http.MethodDelete:
	default:
		methodNotAllowed(w, http.MethodGet, http.MethodPatch, http.MethodDelete)
		return
	}
	d, e := g.authDevice(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch r.Method {
	case http.MethodGet:
		g.writeState(w, r.Context(), d)
	case http.MethodDelete:
		if err := g.deleteDevice(r.Context(), d); err != nil {
			g.writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		var req deviceRequest
		if e := decodeBody(w, r, &req); e != nil {
			writeError(w, e)
			return
		}
		nd, err := g.patch(r.Context(), d, req)
		if err != nil {
			g.writeErr(w, err)
			return
		}
		g.writeState(w, r.Context(), nd)
	}
}

func (g *Gateway) handleSleep(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	d, e := g.authDevice(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var req sleepRequest
	if e := decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if err := g.sleep(r.Context(), d, req); err != nil {
		g.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) writeState(w http.ResponseWriter, ctx context.Context, d store.Device) {
	st, err := g.state(ctx, d)
	if err != nil {
		g.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// authDevice checks the device token against the device of the path: no or
// malformed token, or a wrong secret, is 401; a token of another device,
// or of a device that no longer exists, is 404.
func (g *Gateway) authDevice(r *http.Request) (store.Device, *apiError) {
	id := r.PathValue("id")
	tok := bearer(r, true)
	tokID, ok := tokenDevice(tok)
	if !ok {
		return store.Device{}, errUnauthorized
	}
	if tokID != id {
		return store.Device{}, errNoDevice
	}
	d, err := g.st.Device(r.Context(), id)
	if err != nil {
		if isGone(err) {
			return store.Device{}, errNoDevice
		}
		g.log.Error("proxy: reading device", slog.Any(keyErr, err))
		return store.Device{}, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable"}
	}
	if !tokenMatches(tok, d.TokenHash) {
		return store.Device{}, errUnauthorized
	}
	return d, nil
}

// writeErr answers an *apiError as it is and anything else as a 503: the
// only errors that are not the client's come from the store being away.
func (g *Gateway) writeErr(w http.ResponseWriter, err error) {
	if e, ok := err.(*apiError); ok {
		writeError(w, e)
		return
	}
	if isGone(err) {
		writeError(w, errNoDevice)
		return
	}
	g.internal(w, "request", err)
}

func (g *Gateway) internal(w http.ResponseWriter, what string, err error) {
	g.log.Error("proxy: "+what, slog.Any(keyErr, err))
	writeError(w, &apiError{Status: http.StatusServiceUnavailable, Msg: "temporarily unavailable, try again"})
}

func streamURL(device, up string) string {
	return "/v1/devices/" + url.PathEscape(device) + "/streams/" + url.PathEscape(up)
}

func findSub(d store.Device, up string) (store.Subscription, bool) {
	i := slices.IndexFunc(d.Subscriptions, func(s store.Subscription) bool { return s.Upstream == up })
	if i < 0 {
		return store.Subscription{}, false
	}
	return d.Subscriptions[i], true
}

// state is the device's state for GET, PATCH and POST.
func (g *Gateway) state(ctx context.Context, d store.Device) (deviceState, error) {
	st := deviceState{ID: d.ID, Subscriptions: []subscriptionState{}}
	for _, s := range d.Subscriptions {
		pos, pending, err := g.cursors.cursor(ctx, d.ID, s.Upstream)
		if err != nil {
			return st, err
		}
		connected, err := g.presence.Awake(ctx, d.ID, s.Upstream)
		if err != nil {
			return st, err
		}
		st.Subscriptions = append(st.Subscriptions, subscriptionState{
			Upstream: s.Upstream, StreamURL: streamURL(d.ID, s.Upstream), Pending: pending,
			LastEventID: idAt(ctx, g.st, s.Stream, pos), Connected: connected,
		})
	}
	ps := &pushState{Endpoint: d.Push.Endpoint, Status: d.PushState.Status, LastError: d.PushState.LastError}
	if !d.PushState.LastPushAt.IsZero() {
		t := d.PushState.LastPushAt.UTC()
		ps.LastPushAt = &t
	}
	if ps.Status == "" {
		ps.Status = store.PushOK
	}
	st.Push = ps
	return st, nil
}

// headerName canonicalises a device header name for comparison.
func headerName(s string) string { return http.CanonicalHeaderKey(strings.TrimSpace(s)) }
