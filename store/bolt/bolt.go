// Package bolt implements store.Store on one bbolt file: Store is the
// embedded, single-process backend of a wakeline gateway.
//
// Layout of the file (top-level buckets):
//
//	meta     "format" = "wakeline", "schema" = version, "vapid" = key pair
//	heads    stream -> head: last position, oldest kept position, resume id;
//	         outlives the stream's log so positions are never reused
//	events   stream NUL big-endian position -> event
//	devices  device id -> bucket: "r" record, per upstream 's' stream,
//	         'c' cursor, 'w' outstanding wake
//	subs     stream NUL device id -> "" (devices by stream)
//
// The events of all streams share one bucket rather than one bucket each:
// bbolt rewrites every page from a changed leaf up to the root on commit,
// and a bucket per stream adds its own root and the page of its header to
// that path for every stream a commit touches. There is no index of origin
// ids for the same reason (ids are not in arrival order, so an index would
// add a random leaf per stream to every commit): Lookup scans back from the
// newest event, within the stream's retention.
//
// Appends, cursor moves, wake claims and evictions are group-committed:
// concurrent callers share one transaction and one fsync (see groupCommit).
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/wakeline/wakeline/store"
)

var _ store.Store = (*Store)(nil)

// SchemaVersion is the layout version this package writes. Opening a file
// with a larger one fails with store.ErrNewerSchema.
const SchemaVersion = 1

// Defaults of Options.
const (
	// DefaultTimeout is how long Open waits for another process to release
	// the file.
	DefaultTimeout = time.Second
	// DefaultMaxBatchSize is how many writes share one commit at most.
	DefaultMaxBatchSize = 1000
	// DefaultMode is the permission of a new file.
	DefaultMode os.FileMode = 0o600
)

var (
	bucketMeta    = []byte("meta")
	bucketHeads   = []byte("heads")
	bucketEvents  = []byte("events")
	bucketDevices = []byte("devices")
	bucketSubs    = []byte("subs")
	// bucketCursors holds every cursor, keyed "<device>\x00<upstream>", in
	// one flat bucket: a flush of thousands of cursors then rewrites a few
	// dozen pages, not one per device bucket.
	bucketCursors = []byte("cursors")

	allBuckets = [][]byte{bucketMeta, bucketHeads, bucketEvents, bucketDevices, bucketSubs, bucketCursors}

	keyFormat = []byte("format")
	keySchema = []byte("schema")
	keyVAPID  = []byte("vapid")

	formatName = []byte("wakeline")
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Timeout bounds the wait for a file another process holds; Open then
	// fails with store.ErrInUse. Zero means DefaultTimeout; negative means
	// do not wait at all.
	Timeout time.Duration
	// MaxBatchSize caps the writes (Append, SetCursor, ClaimWake,
	// ClearWake, Evict calls) that share one commit. Writes never wait for
	// company: a batch is what queued while the previous commit ran. Zero
	// means DefaultMaxBatchSize.
	MaxBatchSize int
	// Mode is the permission of a new file. Zero means DefaultMode.
	Mode os.FileMode
	// InitialMmapSize maps this many bytes up front so that a growing file
	// rarely remaps (a remap waits for every reader). Zero means 0 (grow on
	// demand).
	InitialMmapSize int
	// NoSync skips fsync on commit: faster, but a power loss may lose or
	// corrupt recent commits. Only for tests and benchmarks.
	NoSync bool
}

// Store is a store.Store in one bbolt file. Its methods are safe for
// concurrent use; Close releases the file.
type Store struct {
	db     *bbolt.DB
	group  *groupCommit
	wakes  wakeTable
	path   string
	closed atomic.Bool
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Close releases the file after running transactions end. Later calls,
// Close included, return store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}

// begin is the check every method makes before touching the file.
func (s *Store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// abort carries an error a transaction function decided on (not found, an
// error of the caller's function): it rolls the transaction back and
// reaches the caller unchanged.
type abort struct{ err error }

func (a abort) Error() string { return a.err.Error() }

// wrap adds the operation to an error of bbolt and turns its "not open" (a
// call racing Close) into store.ErrClosed.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var a abort
	if errors.As(err, &a) {
		return a.err
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("bolt: %s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("bolt: %s: %w", op, err)
}

// view runs a read transaction.
func (s *Store) view(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(op, s.db.View(fn))
}

// batch runs fn in a commit shared with concurrent writers. fn may run more
// than once, so it must only record results in variables it resets; and it
// should return nil, having written nothing, for outcomes the caller
// reports (not found, ...), because an error makes the whole batch run
// again without it.
func (s *Store) batch(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(op, s.group.do(fn))
}

// update runs fn in a commit of its own, exactly once.
func (s *Store) update(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(op, s.db.Update(fn))
}
