package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/bolt"
	redisstore "github.com/wakeline/wakeline/store/redis"
)

// backend is the store and, with Redis, the cluster of replicas sharing it.
type backend struct {
	st      store.Store
	cluster *redisstore.Cluster
	stop    context.CancelFunc
	done    chan error
}

// redisRetry bounds the wait between attempts to reach Redis at start-up.
const redisRetry = 5 * time.Second

// openBackend opens the configured store. Redis that does not answer yet
// is retried until it does or ctx ends (nil, nil): a replica started
// before its Redis waits for it.
func openBackend(ctx context.Context, cfg config.Config, logger *slog.Logger) (*backend, error) {
	if cfg.Store.Driver != config.DriverRedis {
		st, err := bolt.Open(cfg.Store.Path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		logger.Info("store open", slog.String("driver", "bolt"), slog.String("path", cfg.Store.Path))
		return &backend{st: st}, nil
	}
	// go-redis logs through a process-wide logger of its own, to stderr in
	// plain text: route it into ours (once per process is all there is).
	goredis.SetLogger(redisLog{logger})
	st, err := openRedis(ctx, cfg, logger)
	if st == nil || err != nil {
		return nil, err
	}
	id := cfg.Store.ReplicaID
	if id == "" {
		id = defaultReplicaID()
	}
	// A dead replica's devices count as awake until their presence lapses:
	// keep that about as short as the time its streams take to move.
	cl, err := redisstore.NewCluster(st, id, redisstore.ClusterOptions{
		LeaseTTL: cfg.Store.LeaseTTL, PresenceTTL: 2 * cfg.Store.LeaseTTL, Logger: logger,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b := &backend{st: st, cluster: cl, stop: stop, done: make(chan error, 1)}
	go func() { b.done <- cl.Run(runCtx) }()
	logger.Info("store open", slog.String("driver", "redis"), slog.String("replica_id", id),
		slog.Duration("lease_ttl", cfg.Store.LeaseTTL))
	return b, nil
}

func openRedis(ctx context.Context, cfg config.Config, logger *slog.Logger) (*redisstore.Store, error) {
	wait := 100 * time.Millisecond
	for {
		st, err := redisstore.Open(ctx, cfg.Store.RedisURL, redisstore.Options{})
		if err == nil {
			return st, nil
		}
		if errors.Is(err, store.ErrNotAStore) || errors.Is(err, store.ErrNewerSchema) {
			return nil, err // waiting will not mend it
		}
		logger.Warn("redis not reachable yet, retrying", slog.Any("err", err), slog.Duration("in", wait))
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, redisRetry)
	}
}

// defaultReplicaID is the host name and a random suffix: unique per start.
func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "wakeline"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s", host, hex.EncodeToString(b))
}

// close leaves the cluster (handing the leases over at once) and closes
// the store.
func (b *backend) close(logger *slog.Logger) {
	if b.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := b.cluster.Close(ctx); err != nil && !errors.Is(err, store.ErrClosed) {
			logger.Warn("leaving the cluster", slog.Any("err", err))
		}
		cancel()
		b.stop()
		<-b.done
	}
	if err := b.st.Close(); err != nil {
		logger.Error("closing store", slog.Any("err", err))
	}
}

// redisLog is go-redis's logger on our slog logger, at debug level: what it
// says (a dial failed) the gateway says itself, once, at warn.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
