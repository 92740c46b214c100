package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
)

// runServe runs the gateway on a loaded, validated cfg until ctx is
// cancelled (first SIGINT/SIGTERM), then shuts down gracefully and returns
// nil. An error means the gateway could not start or failed (exit 1).
// fromFile is false when cfg is the embedded defaults (plus environment).
func runServe(ctx context.Context, cfg config.Config, fromFile bool, logger *slog.Logger) error {
	b, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if b == nil {
		return nil // stopped while waiting for the store
	}
	defer b.close(logger)
	st := b.st
	// Start-up is short and bounded; a signal during it is a request to
	// stop after it, not a failure of it.
	sender, keys, err := proxy.NewSender(context.WithoutCancel(ctx), cfg, st, logger)
	if err != nil {
		return err
	}
	if len(cfg.Auth.RegistrationTokens) == 0 {
		logger.Warn("auth.registration_tokens is empty: no device can register")
	}
	opts := proxy.Options{Config: cfg, Store: st, Sender: sender, VAPIDPublicKey: keys.Public, Logger: logger}
	if b.cluster != nil {
		opts.Leader, opts.Bus, opts.Presence = b.cluster, b.cluster, b.cluster
	}
	gw, err := proxy.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	err = gw.Serve(ctx, ln)
	logger.Info("gateway stopped")
	return err
}
