package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// bbolt's page format: a 16-byte header (id, flags, count, overflow), then
// count 16-byte elements whose keys and values sit at offsets relative to
// the element. A leaf element flagged as a bucket holds the bucket's root
// page, or 0 and the bucket's whole leaf page inline.
const (
	pageHeaderSize = 16
	elemSize       = 16
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagBucketLeaf = 0x01
	bucketHeader   = 16
)

// pageWalker checks, reading the file and trusting nothing, what bbolt
// assumes of every page reachable from the root (and what its own walk at
// open reports by crashing): inside the high-water mark, referenced once,
// carrying its own id and a known type, with elements, keys and values
// inside the page, and keys in order within the page and within the range
// its parent gives it. It reads each page once, as bbolt's walk does.
type pageWalker struct {
	r        io.ReaderAt
	pageSize int
	hwm      uint64
	seen     []uint64 // bitset of visited pages
}

var le = binary.LittleEndian // bbolt writes native order; wakeline runs on little-endian machines

func (w *pageWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d out of bounds [2, %d)", id, w.hwm)
	}
	var hdr [pageHeaderSize]byte
	if _, err := w.r.ReadAt(hdr[:], int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := le.Uint64(hdr[:]); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d overflows past the high-water mark", id)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i/64]&(1<<(i%64)) != 0 {
			return nil, fmt.Errorf("page %d referenced twice", i)
		}
		w.seen[i/64] |= 1 << (i % 64)
	}
	p := make([]byte, (overflow+1)*uint64(w.pageSize))
	if _, err := w.r.ReadAt(p, int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return p, nil
}

// keyRange is what the keys of a page may be: at least lo, below hi (nil:
// unbounded), each above the previous one.
type keyRange struct{ lo, hi, prev []byte }

func (r *keyRange) check(id uint64, i int, key []byte) error {
	switch {
	case i == 0 && r.lo != nil && bytes.Compare(key, r.lo) < 0:
		return fmt.Errorf("page %d: first key below its parent's", id)
	case i > 0 && bytes.Compare(key, r.prev) <= 0:
		return fmt.Errorf("page %d: key %d out of order", id, i)
	case r.hi != nil && bytes.Compare(key, r.hi) >= 0:
		return fmt.Errorf("page %d: key %d beyond its parent's range", id, i)
	}
	r.prev = key
	return nil
}

// tree checks the subtree rooted at page id, whose keys must be in r.
func (w *pageWalker) tree(id uint64, r keyRange) error {
	p, err := w.page(id)
	if err != nil {
		return err
	}
	switch le.Uint16(p[8:]) {
	case flagBranch:
		return w.branch(id, p, r)
	case flagLeaf:
		return w.leaf(id, p, r)
	}
	return fmt.Errorf("page %d has type %#x, not branch or leaf", id, le.Uint16(p[8:]))
}

func (w *pageWalker) branch(id uint64, p []byte, r keyRange) error {
	count := int(le.Uint16(p[10:]))
	if count == 0 || pageHeaderSize+count*elemSize > len(p) {
		return fmt.Errorf("branch page %d: %d elements do not fit", id, count)
	}
	key := func(i int) ([]byte, error) {
		e := pageHeaderSize + i*elemSize
		pos, ksize := int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:]))
		if end := e + pos + ksize; end > len(p) || end < e {
			return nil, fmt.Errorf("branch page %d: key %d outside the page", id, i)
		}
		return p[e+pos : e+pos+ksize], nil
	}
	for i := range count {
		k, err := key(i)
		if err != nil {
			return err
		}
		if err := r.check(id, i, k); err != nil {
			return err
		}
		child := keyRange{lo: k, hi: r.hi}
		if i+1 < count {
			if child.hi, err = key(i + 1); err != nil {
				return err
			}
		}
		if err := w.tree(le.Uint64(p[pageHeaderSize+i*elemSize+8:]), child); err != nil {
			return err
		}
	}
	return nil
}

// leaf checks a leaf page (its parent's id for an inline bucket's page)
// and the buckets it holds.
func (w *pageWalker) leaf(id uint64, p []byte, r keyRange) error {
	count := int(le.Uint16(p[10:]))
	if pageHeaderSize+count*elemSize > len(p) {
		return fmt.Errorf("leaf page %d: %d elements do not fit", id, count)
	}
	for i := range count {
		e := pageHeaderSize + i*elemSize
		flags := le.Uint32(p[e:])
		pos, ksize, vsize := int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
		end := e + pos + ksize + vsize
		if end > len(p) || end < e || pos < 0 || ksize < 0 || vsize < 0 {
			return fmt.Errorf("leaf page %d: element %d outside the page", id, i)
		}
		if err := r.check(id, i, p[e+pos:e+pos+ksize]); err != nil {
			return err
		}
		if flags&flagBucketLeaf == 0 {
			continue
		}
		v := p[e+pos+ksize : end]
		if len(v) < bucketHeader {
			return fmt.Errorf("leaf page %d: bucket %d has a short header", id, i)
		}
		if root := le.Uint64(v); root != 0 {
			if err := w.tree(root, keyRange{}); err != nil {
				return err
			}
			continue
		}
		inline := v[bucketHeader:]
		if len(inline) < pageHeaderSize || le.Uint16(inline[8:]) != flagLeaf {
			return fmt.Errorf("leaf page %d: inline bucket %d is not a leaf", id, i)
		}
		if err := w.leaf(id, inline, keyRange{}); err != nil {
			return err
		}
	}
	return nil
}
