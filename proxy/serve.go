package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds a graceful shutdown (INTERFACE: exit within 10 s).
const ShutdownTimeout = 8 * time.Second

// Serve starts the gateway and serves its Handler on ln until ctx ends,
// then shuts down: it stops accepting, ends device streams with a retry
// hint, closes origin connections and workers. The caller closes the store.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	return g.ServeHandler(ctx, ln, g.Handler())
}

// ServeHandler is Serve with h answering the requests; h serves what it
// adds (the demo's web page) and hands the rest to Handler.
func (g *Gateway) ServeHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	if err := g.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	// No ReadTimeout: it would cut device streams, which never end their
	// request. Bodies get their own read deadline in decodeBody.
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("proxy: listening", slog.String("addr", ln.Addr().String()))
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	g.stopStreams() // device streams never go idle: end them so Shutdown can finish
	err := srv.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-errc
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if cerr := g.Close(sctx); cerr != nil && !errors.Is(cerr, ErrClosed) {
		err = errors.Join(err, cerr)
	}
	if err != nil || serveErr != nil {
		return fmt.Errorf("proxy: serve: %w", errors.Join(serveErr, err))
	}
	return nil
}
