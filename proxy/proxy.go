// Package proxy is the wakeline hub: Gateway ties the origin connections
// (upstream), the durable buffers (store) and the wake messages (push)
// together, and serves the REST API and the device event streams of
// INTERFACE.md.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/upstream"
)

// connectsPerUpstream bounds the origin connections of one upstream being
// set up at once: thousands of per-device streams starting together would
// otherwise each dial (HTTP/2 dials a new connection for every request
// waiting on a full one).
const connectsPerUpstream = 4

var (
	// ErrClosed is returned by calls on a closed Gateway.
	ErrClosed = errors.New("proxy: gateway closed")
	// ErrNoSender: Options.Sender is required.
	ErrNoSender = errors.New("proxy: a push sender is required")
	// ErrNoStore: Options.Store is required.
	ErrNoStore = errors.New("proxy: a store is required")
)

// Options configure a Gateway. Config, Store and Sender are required.
type Options struct {
	Config config.Config
	// Store is the gateway's state; the Gateway does not close it.
	Store store.Store
	// Sender signs and sends wake messages.
	Sender *push.Sender
	// VAPIDPublicKey is served at /v1/vapid for applicationServerKey.
	VAPIDPublicKey string
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served at /metrics;
	// nil makes a new one with the Go and process collectors.
	Registry *prometheus.Registry
	// OriginClient makes the origin requests; nil uses upstream's default.
	OriginClient *http.Client
	// PushWorkers is the number of concurrent wake senders; 0 means 16.
	PushWorkers int
	// SlowDeviceTimeout ends a device stream that cannot take a write for
	// this long (its socket buffers are full); 0 means 10s. The device
	// resumes by Last-Event-ID; nothing is queued for it in memory.
	SlowDeviceTimeout time.Duration
	// OnWake, if set, is called with the outcome of every wake message:
	// when the event that asked for it was received, when the push service
	// answered (zero if it never did), and the error (nil: delivered). It
	// runs on the gateway's goroutines and must be quick. Benchmarks use it.
	OnWake func(device, upstream string, received, answered time.Time, err error)
	// Leader, Bus and Presence are what several replicas share beyond the
	// store (see cluster.go); nil means this gateway is alone.
	Leader   Leader
	Bus      Bus
	Presence Presence
}

// subEntry is one device following one stream.
type subEntry struct {
	upstream string
	headers  map[string]string
}

// Gateway is the hub. Start it, serve Handler, Close it.
type Gateway struct {
	cfg         config.Config
	st          store.Store
	log         *slog.Logger
	reg         *prometheus.Registry
	metrics     *metrics
	regAuth     registrationAuth
	upstreams   map[string]config.Upstream
	gates       map[string]*upstream.Gate // per upstream: bounds concurrent connects
	origin      *http.Client
	slowAfter   time.Duration
	onWake      func(device, upstream string, received, answered time.Time, err error)
	vapidPublic string

	leader   Leader
	bus      Bus
	presence Presence

	sender  *push.Sender
	queue   *push.Queue
	waker   *waker
	cursors *cursors
	results chan push.Result

	// bg is the context of background work, streams that of device
	// streams: Close ends streams first, so devices get a retry hint.
	bg, streams             context.Context
	stopBG, stopStreams     context.CancelFunc
	wg                      sync.WaitGroup
	ready, started, closing atomic.Bool

	mu      sync.Mutex
	subs    map[string]map[string]subEntry // stream → device → entry
	runners map[string]*runner
	tails   map[string]*tail
	awake   map[cursorKey]int
	conns   map[string]map[*int]context.CancelFunc // device → open streams
}

// New makes a Gateway; nothing runs until Start.
func New(o Options) (*Gateway, error) {
	if o.Store == nil {
		return nil, ErrNoStore
	}
	if o.Sender == nil {
		return nil, ErrNoSender
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	g := &Gateway{
		cfg: o.Config, st: o.Store, log: log, reg: reg, metrics: newMetrics(reg),
		regAuth:     newRegistrationAuth(o.Config.Auth.RegistrationTokens),
		upstreams:   map[string]config.Upstream{},
		gates:       map[string]*upstream.Gate{},
		origin:      o.OriginClient,
		vapidPublic: o.VAPIDPublicKey,
		results:     make(chan push.Result, 1024),
		subs:        map[string]map[string]subEntry{},
		runners:     map[string]*runner{},
		tails:       map[string]*tail{},
		awake:       map[cursorKey]int{},
		conns:       map[string]map[*int]context.CancelFunc{},
	}
	for _, u := range o.Config.Upstreams {
		g.upstreams[u.Name] = u
		g.gates[u.Name] = upstream.NewGate(connectsPerUpstream)
	}
	g.onWake = o.OnWake
	g.leader, g.bus, g.presence = o.Leader, o.Bus, o.Presence
	if g.leader == nil {
		g.leader = localLeader{}
	}
	if g.bus == nil {
		g.bus = localBus{}
	}
	if g.presence == nil {
		g.presence = newLocalPresence()
	}
	g.slowAfter = o.SlowDeviceTimeout
	if g.slowAfter <= 0 {
		g.slowAfter = defaultSlowDeviceTimeout
	}
	g.bg, g.stopBG = context.WithCancel(context.Background())
	g.streams, g.stopStreams = context.WithCancel(context.Background())
	workers := o.PushWorkers
	if workers <= 0 {
		workers = 16
	}
	g.sender = o.Sender
	g.queue = push.NewQueue(o.Sender, push.QueueOptions{Workers: workers, Logger: log}, g.onPushResult)
	g.cursors = newCursors(o.Store, log)
	g.waker = newWaker(o.Store, g.cursors, g.queue, g.presence, o.Config.Push.RewakeAfter, log, g.metrics)
	return g, nil
}

// Start loads the device registry, starts an origin connection for every
// stream that has a subscriber, and the background workers. It returns
// once all of them are started, not connected.
func (g *Gateway) Start(ctx context.Context) error {
	if g.closing.Load() {
		return ErrClosed
	}
	if !g.started.CompareAndSwap(false, true) {
		return nil
	}
	err := g.st.Devices(ctx, "", func(d store.Device) error {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.indexLocked(d)
		return nil
	})
	if err != nil {
		return fmt.Errorf("proxy: loading devices: %w", err)
	}
	g.mu.Lock()
	for stream := range g.subs {
		g.ensureRunnerLocked(stream)
	}
	g.mu.Unlock()
	for range wakeWorkers {
		g.goBG(g.waker.run)
	}
	for range wakeWorkers {
		g.goBG(g.recordResults)
	}
	g.goBG(func(ctx context.Context) { g.cursors.run(ctx, context.WithoutCancel(ctx)) })
	g.goBG(g.janitor)
	g.goBG(g.listen)
	g.ready.Store(true)
	g.log.Info("proxy: gateway started", slog.Int("upstreams", len(g.upstreams)), slog.Int("streams", len(g.runners)))
	return nil
}

// goBG runs fn in a goroutine owned by the gateway until Close.
func (g *Gateway) goBG(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(g.bg)
	}()
}

// Ready reports whether the gateway is started and not closing.
func (g *Gateway) Ready() bool { return g.ready.Load() && !g.closing.Load() }

// Close ends device streams (each gets a retry hint), stops origin
// connections and workers, sends what the push queue holds within ctx, and
// flushes cursors. The store stays open for its owner to close.
func (g *Gateway) Close(ctx context.Context) error {
	if !g.closing.CompareAndSwap(false, true) {
		return ErrClosed
	}
	g.ready.Store(false)
	g.stopStreams()
	g.stopBG()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("proxy: waiting for workers: %w", ctx.Err())
	}
	if qerr := g.queue.Close(ctx); qerr != nil && !errors.Is(qerr, push.ErrClosed) {
		err = errors.Join(err, qerr)
	}
	g.sender.CloseIdleConnections()
	return err
}

// onPushResult is called by push workers; it must be quick, so the store
// write happens in recordResults.
func (g *Gateway) onPushResult(r push.Result) {
	select {
	case g.results <- r:
	case <-g.bg.Done():
	}
}

func (g *Gateway) recordResults(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-g.results:
			if g.onWake != nil {
				g.onWake(r.Job.Device, r.Job.Upstream, r.Job.Enqueued, r.Answered, r.Err)
			}
			g.waker.result(ctx, r)
		}
	}
}

// janitorEvery is how often retention runs over every known stream.
const janitorEvery = 30 * time.Second

// janitor evicts what falls outside each upstream's buffer settings, in
// bounded batches so appends are never blocked for long.
func (g *Gateway) janitor(ctx context.Context) {
	t := time.NewTicker(janitorEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.evictAll(ctx)
		}
	}
}

func (g *Gateway) evictAll(ctx context.Context) {
	g.mu.Lock()
	streams := make(map[string]string, len(g.subs))
	for stream, devs := range g.subs {
		for _, e := range devs {
			streams[stream] = e.upstream
			break
		}
	}
	g.mu.Unlock()
	for name, u := range g.upstreams {
		if u.IsShared() {
			streams[sharedStream(name)] = name
		}
	}
	for stream, up := range streams {
		u := g.upstreams[up]
		r := store.Retention{MaxEvents: u.Buffer.MaxEvents, MaxAge: u.Buffer.MaxAge}
		for ctx.Err() == nil {
			n, err := g.st.Evict(ctx, stream, r, time.Now(), 1000)
			if err != nil || n == 0 {
				break
			}
		}
	}
}
