// Package proxytest starts Gateway, a real wakeline gateway on a bolt file,
// for tests, benchmarks and the demo: what httptest is to net/http. Pair it
// with upstreamtest's origin and pushtest's push service.
package proxytest

import (
	"context"
	"errors"
	"time"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/bolt"
)

// RegistrationToken is the registration token of Config.
const RegistrationToken = "reg-secret"

// Config is a gateway config for tests: RegistrationToken, plain-http and
// loopback push endpoints allowed (pushtest's), a subject, and one shared
// upstream "news" at originURL that reconnects within milliseconds.
func Config(originURL string) config.Config {
	cfg := config.Default()
	cfg.Auth.RegistrationTokens = []string{RegistrationToken}
	cfg.Push.AllowInsecureEndpoints = true
	cfg.Push.Subject = "mailto:ops@example.com"
	up := config.DefaultUpstream()
	up.Name, up.URL = "news", originURL
	up.Retry = config.RetryConfig{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	up.Buffer = config.BufferConfig{MaxEvents: 10000, MaxAge: time.Hour}
	cfg.Upstreams = []config.Upstream{up}
	return cfg
}

// Options say what Start starts. Config and Path are required.
type Options struct {
	Config config.Config
	// Path is the bolt file; Start creates it if it is missing.
	Path string
	// Wrap, if set, wraps the store the gateway is given (a test double
	// that fails on cue, say); Gateway.Store stays the bolt store.
	Wrap func(store.Store) store.Store
	// Proxy holds the gateway's other options (OnWake, SlowDeviceTimeout,
	// ...); Start sets Config, Store, Sender and VAPIDPublicKey.
	Proxy proxy.Options
}

// Gateway is a started gateway and its store.
type Gateway struct {
	*proxy.Gateway
	// Store is the bolt store under the gateway.
	Store store.Store
	// Keys is the VAPID key pair, generated once into the store.
	Keys store.VAPIDKeys
}

// Start opens the bolt file and starts a gateway on it; serve its Handler.
func Start(ctx context.Context, o Options) (*Gateway, error) {
	st, err := bolt.Open(o.Path, bolt.Options{})
	if err != nil {
		return nil, err
	}
	g, err := start(ctx, o, st)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return g, nil
}

func start(ctx context.Context, o Options, st store.Store) (*Gateway, error) {
	sender, keys, err := proxy.NewSender(ctx, o.Config, st, o.Proxy.Logger)
	if err != nil {
		return nil, err
	}
	po := o.Proxy
	po.Config, po.Store, po.Sender, po.VAPIDPublicKey = o.Config, st, sender, keys.Public
	if o.Wrap != nil {
		po.Store = o.Wrap(st)
	}
	gw, err := proxy.New(po)
	if err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		return nil, errors.Join(err, gw.Close(ctx))
	}
	return &Gateway{Gateway: gw, Store: st, Keys: keys}, nil
}

// Close closes the gateway (if its owner has not) and then the store.
func (g *Gateway) Close(ctx context.Context) error {
	err := g.Gateway.Close(ctx)
	if errors.Is(err, proxy.ErrClosed) {
		err = nil
	}
	return errors.Join(err, g.Store.Close())
}
