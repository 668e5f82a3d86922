package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"storesync/block"
)

// TestReadersSeeOneTip: readers running while blocks are applied always see
// one consistent tip across the media: the snapshot's trees match its
// header, its tip block is readable from the files, and its notes and
// header rows from SQLite are there and no later ones are.
func TestReadersSeeOneTip(t *testing.T) {
	c := testChain(t, "small", 40)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	var done atomic.Bool
	var wg sync.WaitGroup
	var checks atomic.Int64
	errs := make(chan string, 4)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				sn := s.Snapshot()
				n := sn.Committed()
				h := sn.State.Header
				if sn.State.Accounts.Root() != h.AccountRoot || sn.State.Nullifiers.Root() != h.NullifierRoot {
					errs <- "trees do not match the tip header"
					return
				}
				data, err := sn.BlockBytes(n)
				if err != nil {
					errs <- err.Error()
					return
				}
				b, err := block.Decode(data)
				if err != nil || b.Header != h {
					errs <- "tip block file does not hold the tip header"
					return
				}
				if n > 0 {
					ids := b.NoteIDs()
					got, err := sn.NotesByID(context.Background(), ids)
					if err != nil || len(got) != len(ids) {
						errs <- "tip notes missing from SQLite"
						return
					}
				}
				if n < 40 {
					later := c.Blocks[n].NoteIDs() // block n+1's notes
					got, err := sn.NotesByID(context.Background(), later)
					if err != nil || len(got) != 0 {
						errs <- "a note of a later block is visible"
						return
					}
				}
				checks.Add(1)
			}
		}()
	}
	applyAll(t, s, c.Blocks)
	done.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if checks.Load() == 0 {
		t.Fatal("readers made no checks")
	}
}
