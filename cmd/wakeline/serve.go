package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/bolt"
)

// fallbackSubject is the VAPID subject used when the config names none.
// Push services want a contact (Apple's refuses a push without one), so
// serve warns when it falls back to it.
const fallbackSubject = "mailto:wakeline@localhost"

// errNoRedis: the redis driver is validated by config but not built yet.
var errNoRedis = errors.New("store.driver redis is not available in this version; use bolt")

// runServe runs the gateway on a loaded, validated cfg until ctx is
// cancelled (first SIGINT/SIGTERM), then shuts down gracefully and returns
// nil. An error means the gateway could not start or failed (exit 1).
// fromFile is false when cfg is the embedded defaults (plus environment).
func runServe(ctx context.Context, cfg config.Config, fromFile bool, logger *slog.Logger) error {
	st, err := openStore(cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			logger.Error("closing store", slog.Any("err", cerr))
		}
	}()
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
	gw, err := proxy.New(proxy.Options{Config: cfg, Store: st, Sender: sender, VAPIDPublicKey: keys.Public, Logger: logger})
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

func openStore(cfg config.Config, logger *slog.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.DriverRedis:
		return nil, errNoRedis
	default:
		st, err := bolt.Open(cfg.Store.Path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		logger.Info("store open", slog.String("driver", "bolt"), slog.String("path", cfg.Store.Path))
		return st, nil
	}
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
