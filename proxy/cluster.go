package proxy

import (
	"context"
	"sync"

	"github.com/wakeline/wakeline/store"
)

// Several replicas share one store. What else they must share is behind
// these three small interfaces; a single gateway uses the local versions at
// the end of this file. store/redis implements all three for a cluster.

// Leader decides which replica holds each origin stream.
type Leader interface {
	// Lead blocks until this replica should hold stream's origin connection
	// and holds its lease, then returns a context that ends as soon as the
	// lease is lost or handed to another replica (and when ctx ends). It
	// returns ctx's error if ctx ends first. The caller calls release when it
	// stops holding the stream.
	Lead(ctx context.Context, stream string) (held context.Context, release func(), err error)
}

// Bus carries news between replicas: a stream grew, a device changed.
type Bus interface {
	// Announce tells every replica (this one included, or not: receivers
	// must not care) that stream grew, or, with a device id, that a device
	// was registered, changed or deleted.
	Announce(ctx context.Context, n Notice) error
	// Listen calls fn for every notice from other replicas until ctx ends.
	// Notices may be lost when a replica is cut off; receivers read the
	// store by position, so a lost notice delays, never loses, an event.
	Listen(ctx context.Context, fn func(Notice)) error
}

// Notice is one message on the Bus: a stream grew, or a device changed.
type Notice = store.Notice

// Presence knows which devices have a stream open on any replica.
type Presence interface {
	// Enter marks the device awake for upstream until leave is called (or
	// this replica dies: then within its presence TTL).
	Enter(ctx context.Context, device, upstream string) (leave func(), err error)
	// Awake reports whether the device has a stream open for upstream on
	// any replica.
	Awake(ctx context.Context, device, upstream string) (bool, error)
}

// localLeader: one gateway holds every stream.
type localLeader struct{}

func (localLeader) Lead(ctx context.Context, _ string) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return ctx, func() {}, nil
}

// localBus: one gateway needs no news from others.
type localBus struct{}

func (localBus) Announce(context.Context, Notice) error { return nil }

func (localBus) Listen(ctx context.Context, _ func(Notice)) error {
	<-ctx.Done()
	return nil
}

// localPresence counts the open streams of this gateway.
type localPresence struct {
	mu    sync.Mutex
	awake map[cursorKey]int
}

func newLocalPresence() *localPresence { return &localPresence{awake: map[cursorKey]int{}} }

func (p *localPresence) Enter(_ context.Context, device, upstream string) (func(), error) {
	k := cursorKey{device, upstream}
	p.mu.Lock()
	p.awake[k]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.awake[k]--; p.awake[k] <= 0 {
				delete(p.awake, k)
			}
			p.mu.Unlock()
		})
	}, nil
}

func (p *localPresence) Awake(_ context.Context, device, upstream string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.awake[cursorKey{device, upstream}] > 0, nil
}
