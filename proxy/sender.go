package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

// FallbackSubject is the VAPID subject used when the config names none.
// Push services want a contact (Apple's refuses a push without one), so
// NewSender warns when it falls back to it.
const FallbackSubject = "mailto:wakeline@localhost"

// NewSender makes the wake sender cfg describes, with the VAPID key pair of
// the config or, when it has none, the one kept in keys (generated there on
// the first start, so that every replica and restart signs alike). It
// returns the pair too: its public half is served at /v1/vapid.
func NewSender(ctx context.Context, cfg config.Config, keys store.Keys, log *slog.Logger) (*push.Sender, store.VAPIDKeys, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pair, err := vapidKeys(ctx, cfg, keys, log)
	if err != nil {
		return nil, pair, err
	}
	subject := cfg.Push.Subject
	if subject == "" {
		log.Warn("push.subject is not set; push services want a mailto: or https: contact", slog.String("using", FallbackSubject))
		subject = FallbackSubject
	}
	sender, err := push.NewSender(push.Config{
		VAPIDPublicKey: pair.Public, VAPIDPrivateKey: pair.Private, Subject: subject,
		TTL: cfg.Push.TTL, Urgency: cfg.Push.Urgency,
	}, push.NewHTTPClient(cfg.Push.AllowInsecureEndpoints), log)
	return sender, pair, err
}

func vapidKeys(ctx context.Context, cfg config.Config, keys store.Keys, log *slog.Logger) (store.VAPIDKeys, error) {
	if cfg.Push.VAPIDPublicKey != "" {
		return store.VAPIDKeys{Public: cfg.Push.VAPIDPublicKey, Private: cfg.Push.VAPIDPrivateKey}, nil
	}
	generated := false
	pair, err := keys.VAPIDKeys(ctx, func() (store.VAPIDKeys, error) {
		generated = true
		return push.GenerateVAPIDKeys()
	})
	if err != nil {
		return pair, fmt.Errorf("proxy: vapid keys: %w", err)
	}
	if generated {
		log.Info("no VAPID keys in the config: generated a key pair and kept it in the store", slog.String("public_key", pair.Public))
	} else {
		log.Info("using the VAPID key pair kept in the store", slog.String("public_key", pair.Public))
	}
	return pair, nil
}
