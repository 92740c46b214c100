package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

// fallbackSubject is the VAPID subject used when the config names none.
// Push services want a contact (Apple's refuses a push without one), so
// serve warns when it falls back to it.
const fallbackSubject = "mailto:wakeline@localhost"

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
	keys, err := vapidKeys(context.WithoutCancel(ctx), cfg, st, logger)
	if err != nil {
		return err
	}
	subject := cfg.Push.Subject
	if subject == "" {
		logger.Warn("push.subject is not set; push services want a mailto: or https: contact", slog.String("using", fallbackSubject))
		subject = fallbackSubject
	}
	if len(cfg.Auth.RegistrationTokens) == 0 {
		logger.Warn("auth.registration_tokens is empty: no device can register")
	}
	sender, err := push.NewSender(push.Config{
		VAPIDPublicKey: keys.Public, VAPIDPrivateKey: keys.Private, Subject: subject,
		TTL: cfg.Push.TTL, Urgency: cfg.Push.Urgency,
	}, push.NewHTTPClient(cfg.Push.AllowInsecureEndpoints), logger)
	if err != nil {
		return err
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

// vapidKeys returns the configured key pair, or the one kept in the store,
// generated on the first start.
func vapidKeys(ctx context.Context, cfg config.Config, st store.Keys, logger *slog.Logger) (store.VAPIDKeys, error) {
	if cfg.Push.VAPIDPublicKey != "" {
		return store.VAPIDKeys{Public: cfg.Push.VAPIDPublicKey, Private: cfg.Push.VAPIDPrivateKey}, nil
	}
	generated := false
	keys, err := st.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) {
		generated = true
		return push.GenerateVAPIDKeys()
	})
	if err != nil {
		return keys, fmt.Errorf("vapid keys: %w", err)
	}
	if generated {
		logger.Info("no VAPID keys in the config: generated a key pair and kept it in the store", slog.String("public_key", keys.Public))
	} else {
		logger.Info("using the VAPID key pair kept in the store", slog.String("public_key", keys.Public))
	}
	return keys, nil
}
