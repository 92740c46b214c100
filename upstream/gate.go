package upstream

import "context"

// Gate bounds the connections being set up at once by the Clients that
// share it (Client.Gate). Streams already open do not hold a slot. A Gate is
// safe for concurrent use; its zero value is not usable, use NewGate.
type Gate struct {
	slots chan struct{}
}

// NewGate returns a gate letting n connections be set up at once; n < 1
// means 1.
func NewGate(n int) *Gate {
	return &Gate{slots: make(chan struct{}, max(n, 1))}
}

// enter waits for a slot; it reports false if ctx ended first. A nil Gate
// always admits.
func (g *Gate) enter(ctx context.Context) bool {
	if g == nil {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (g *Gate) leave() {
	if g != nil {
		<-g.slots
	}
}
