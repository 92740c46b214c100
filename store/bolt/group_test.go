package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// TestGroupCommitIsolatesFailures sends writes at once, some failing and
// one panicking: each gets its own outcome, and every good write is
// committed, whatever batch it shared.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	g := &groupCommit{db: db, max: 7}
	const n = 60
	errBad := errors.New("bad write")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = g.do(func(tx *bbolt.Tx) error {
				if err := tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					return err
				}
				switch {
				case i == 13:
					panic("write 13 panics")
				case i%10 == 3:
					return errBad // after a put: the rollback must undo it
				}
				return nil
			})
		})
	}
	wg.Wait()
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for i := range n {
			stored := b.Get(fmt.Appendf(nil, "k%02d", i)) != nil
			switch {
			case i == 13:
				if errs[i] == nil || stored {
					t.Errorf("write 13: err %v, stored %v; want the panic as an error, nothing stored", errs[i], stored)
				}
			case i%10 == 3:
				if !errors.Is(errs[i], errBad) || stored {
					t.Errorf("write %d: err %v, stored %v; want its error, nothing stored", i, errs[i], stored)
				}
			default:
				if errs[i] != nil || !stored {
					t.Errorf("write %d: err %v, stored %v; want it committed", i, errs[i], stored)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
