package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/store"
)

// busBuffer is how many notices wait for Listen's fn before go-redis drops
// them (a lost notice only delays a reader, see proxy's Bus).
const busBuffer = 1024

// busMessage is a notice on the bus channel, with its sender.
type busMessage struct {
	Replica string `json:"replica"`
	Sender  string `json:"sender"` // the instance: replica ids may clash
	store.Notice
}

// Announce publishes n to every replica's Listen (this one's drops it).
func (c *Cluster) Announce(ctx context.Context, n store.Notice) error {
	if c.isClosed() {
		return store.ErrClosed
	}
	if err := c.st.begin(ctx); err != nil {
		return err
	}
	b, err := json.Marshal(busMessage{Replica: c.id, Sender: c.nonce, Notice: n})
	if err != nil {
		return fmt.Errorf("redis: announce: %w", err)
	}
	return c.st.wrap("announce", c.st.rdb.Publish(ctx, c.st.key("bus"), b).Err())
}

// Listen calls fn, one notice at a time, for every notice other replicas
// announce, until ctx ends (it returns nil) or Close is called
// (store.ErrClosed). While Redis is away the subscription is re-made as it
// comes back; notices sent meanwhile are lost.
func (c *Cluster) Listen(ctx context.Context, fn func(store.Notice)) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return store.ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	if err := c.st.begin(ctx); err != nil {
		return err
	}
	ps := c.st.rdb.Subscribe(ctx, c.st.key("bus"))
	defer ps.Close()
	ch := ps.Channel(goredis.WithChannelSize(busBuffer))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return store.ErrClosed
		case m, ok := <-ch:
			if !ok {
				return store.ErrClosed // the store was closed
			}
			var bm busMessage
			if err := json.Unmarshal([]byte(m.Payload), &bm); err != nil {
				c.log.Warn("redis: bad message on the bus", slog.Any(keyErr, err))
				continue
			}
			if bm.Sender == c.nonce {
				continue
			}
			fn(bm.Notice)
		}
	}
}
