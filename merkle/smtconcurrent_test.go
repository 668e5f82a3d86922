package merkle

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestSMTConcurrentReaders reads a tree from several goroutines while two
// others build many trees from it, touching its paths in every way
// (rewrites, deletes, inserts that split the levels a branch skips). Under
// -race any write to a node the old tree can reach is reported.
func TestSMTConcurrentReaders(t *testing.T) {
	kvs := randomKVs(3, 3000)
	base := BuildSMT(kvs)
	wantRoot, wantLen := base.Root(), base.Len()

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; !stop.Load(); i = (i + 7) % len(kvs) {
				kv := kvs[i]
				if v, ok := base.Get(kv.Key); !ok || v != kv.Value {
					errs <- "Get changed"
					return
				}
				if !VerifySMT(base.Root(), kv.Key, kv.Value, base.Prove(kv.Key)) {
					errs <- "proof no longer verifies"
					return
				}
				if i%50 == 0 {
					n := 0
					base.Walk(func(_, _ Hash) bool { n++; return true })
					if n != wantLen {
						errs <- "Walk changed"
						return
					}
				}
			}
		}()
	}

	// Two writers build candidate trees from the same base at once, as
	// when two blocks at the same height are applied.
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			cur := base
			for i := range 20 {
				batch := randomKVs(100+2*i+w, 200) // new keys
				for j := range 100 {
					kv := kvs[(i*100+j)%len(kvs)]
					kv.Value[0] ^= byte(j%2 + 1) // rewrite
					if j%3 == 0 {
						kv.Value = Hash{} // delete
					}
					batch = append(batch, kv)
				}
				if i%2 == 0 {
					cur = base // fork from the shared tree again
				}
				cur = cur.Update(batch)
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if base.Root() != wantRoot || base.Len() != wantLen {
		t.Fatal("base tree changed")
	}
}
