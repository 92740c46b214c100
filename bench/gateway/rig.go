package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

const regToken = proxytest.RegistrationToken

// rig is a gateway with its origin and push service.
type rig struct {
	origin *upstreamtest.Origin
	push   *pushtest.Server
	base   string
	client *http.Client
	stop   func()
	done   chan struct{} // closed by stop
}

func newRig(ctx context.Context, mutate func(*config.Config), onWake func(device, up string, received, answered time.Time, err error)) (*rig, error) {
	r := &rig{origin: upstreamtest.New(), push: pushtest.New()}
	dir, err := os.MkdirTemp("", "wakeline-bench-")
	if err != nil {
		return nil, err
	}
	cfg := proxytest.Config(r.origin.URL)
	cfg.Upstreams[0].Buffer.MaxEvents = 100000
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := proxytest.Start(ctx, proxytest.Options{
		Config: cfg, Path: filepath.Join(dir, "bench.db"), Proxy: proxy.Options{OnWake: onWake},
	})
	if err != nil {
		return nil, err
	}
	gw := g.Gateway
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Serve(sctx, ln) }()
	r.base = "http://" + ln.Addr().String()
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	r.done = make(chan struct{})
	r.stop = func() {
		close(r.done)
		cancel()
		<-done
		_ = g.Close(context.Background())
		r.origin.Close()
		r.push.Close()
		os.RemoveAll(dir)
	}
	return r, nil
}

type dev struct{ id, token string }

// register makes n devices on "news", 32 at a time.
func (r *rig) register(ctx context.Context, n int) ([]dev, error) {
	devs := make([]dev, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range devs {
		g.Go(func() error {
			sub, err := r.push.NewSubscription()
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]any{"push_subscription": sub, "subscriptions": []any{map[string]string{"upstream": "news"}}})
			req, _ := http.NewRequestWithContext(ctx, "POST", r.base+"/v1/devices", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+regToken)
			resp, err := r.client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("register: %d", resp.StatusCode)
			}
			var out struct{ ID, Token string }
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				return err
			}
			devs[i] = dev{out.ID, out.Token}
			return nil
		})
	}
	return devs, g.Wait()
}

// open opens a device's stream; the caller reads and closes it.
func (r *rig) open(ctx context.Context, d dev, lastID string) (*http.Response, *upstream.Decoder, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/v1/devices/"+d.id+"/streams/news", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("open: %d", resp.StatusCode)
	}
	return resp, upstream.NewDecoder(resp.Body), nil
}

// ready registers n devices, waits for the origin connection they make
// the gateway open, and keeps the push service's record empty until the
// rig stops.
func (r *rig) ready(ctx context.Context, n int) ([]dev, error) {
	devs, err := r.register(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := r.waitOrigin(ctx); err != nil {
		return nil, err
	}
	go func() {
		for {
			select {
			case <-r.done:
				return
			case <-r.push.Received():
			}
		}
	}()
	return devs, nil
}

// waitOrigin waits for the gateway's origin connection.
func (r *rig) waitOrigin(ctx context.Context) error {
	select {
	case <-r.origin.Connected():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// samples collects durations from many goroutines.
type samples struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
}
