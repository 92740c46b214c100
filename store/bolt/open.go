package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/wakeline/wakeline/store"
)

// Open opens the store in the file at path, creating it when it does not
// exist (an empty file counts as new). A file that is not a wakeline store,
// or is truncated or corrupt, fails with store.ErrNotAStore; one written by
// a newer schema with store.ErrNewerSchema; one another process holds with
// store.ErrInUse after opts.Timeout. The error names the file. Nothing is
// ever reset or repaired.
func Open(path string, opts Options) (s *Store, err error) {
	if err := checkFile(path); err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = time.Nanosecond // bbolt waits forever on 0
	}
	// Opening rebuilds the freelist by walking every page (NoFreelistSync),
	// and bbolt panics on a corrupt page it meets there.
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("bolt: open %s: %w: corrupt file: %v", path, store.ErrNotAStore, p)
		}
	}()
	db, err := bbolt.Open(path, cmpOr(opts.Mode, DefaultMode), &bbolt.Options{
		Timeout:         timeout,
		NoFreelistSync:  true, // smaller commits; the freelist is rebuilt on open
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: opts.InitialMmapSize,
		NoSync:          opts.NoSync,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := initSchema(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	group := &groupCommit{db: db, max: cmpOr(opts.MaxBatchSize, DefaultMaxBatchSize)}
	return &Store{db: db, group: group, path: path, wakes: wakeTable{m: map[string]map[string]wakeEntry{}}}, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("bolt: open %s: %w (waited for its lock)", path, store.ErrInUse)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return fmt.Errorf("bolt: open %s: %w: %w", path, store.ErrNotAStore, err)
	}
	return fmt.Errorf("bolt: open %s: %w", path, err)
}

// bbolt's file format (version 2): each of the first two pages holds a meta
// record after a 16-byte page header; the valid one with the larger
// transaction id is current.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaOffset     = 16
	metaSumOffset  = metaOffset + 56 // the checksum covers the meta before it
	metaRecordSize = metaSumOffset + 8
)

// checkFile refuses a file that is shorter than its current meta says, or
// whose page tree is damaged (see pageWalker). bbolt takes both on trust
// and would crash the process: a fault on a page past the end of the file
// (SIGBUS) and assertion panics in a goroutine of its own, neither of which
// can be recovered. A missing or empty file, or one whose meta pages are not
// valid, is left for bbolt to create or to refuse.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return err
	}
	var best *boltMeta
	m0, ok := readMeta(f, 0)
	if ok {
		best = &m0
	}
	if m1, ok := readMeta(f, int64(cmpOr(m0.pageSize, 4096))); ok && (best == nil || m1.txid > best.txid) {
		best = &m1
	}
	if best == nil {
		return nil // bbolt says why
	}
	if need := int64(best.pgid) * int64(best.pageSize); info.Size() < need {
		return fmt.Errorf("%w: truncated: %d bytes, the database needs %d", store.ErrNotAStore, info.Size(), need)
	}
	w := pageWalker{r: f, pageSize: int(best.pageSize), hwm: best.pgid, seen: make([]uint64, best.pgid/64+1)}
	if err := w.tree(best.root, keyRange{}); err != nil {
		return fmt.Errorf("%w: corrupt: %w", store.ErrNotAStore, err)
	}
	return nil
}

type boltMeta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	pgid     uint64 // high-water mark: pages in use are below it
	txid     uint64
}

func readMeta(r io.ReaderAt, off int64) (boltMeta, bool) {
	var b [metaRecordSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := boltMeta{
		pageSize: le.Uint32(b[metaOffset+8:]),
		root:     le.Uint64(b[metaOffset+16:]),
		pgid:     le.Uint64(b[metaOffset+40:]),
		txid:     le.Uint64(b[metaOffset+48:]),
	}
	h := fnv.New64a()
	h.Write(b[metaOffset:metaSumOffset])
	ok := le.Uint32(b[metaOffset:]) == boltMagic && le.Uint32(b[metaOffset+4:]) == boltVersion &&
		le.Uint64(b[metaSumOffset:]) == h.Sum64() && m.pageSize >= 512
	return m, ok
}

// initSchema checks the file's meta bucket, or writes it into a file that
// holds no bucket at all (new, or created by a crash before the first
// commit). A bbolt file of another application is refused, never reset.
func initSchema(db *bbolt.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: corrupt file: %v", store.ErrNotAStore, p)
		}
	}()
	return db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return createSchema(tx)
		}
		if !bytes.Equal(meta.Get(keyFormat), formatName) {
			return fmt.Errorf("%w: no wakeline format mark", store.ErrNotAStore)
		}
		v := meta.Get(keySchema)
		if len(v) != 8 {
			return fmt.Errorf("%w: bad schema version record", store.ErrNotAStore)
		}
		if n := binary.BigEndian.Uint64(v); n > SchemaVersion {
			return fmt.Errorf("%w: schema %d, this wakeline reads up to %d", store.ErrNewerSchema, n, SchemaVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q missing", store.ErrNotAStore, name)
			}
		}
		return nil
	})
}

func createSchema(tx *bbolt.Tx) error {
	empty := true
	_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
	if !empty {
		return fmt.Errorf("%w: a bbolt file of another application", store.ErrNotAStore)
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyFormat, formatName); err != nil {
		return err
	}
	return meta.Put(keySchema, u64Bytes(SchemaVersion))
}
