package api

// What the package's tests share, internal (fuzz) and external (api_test).

import (
	"context"
	"testing"

	"storesync/block"
	"storesync/store"
	"storesync/workload"
)

// FixtureBlocks is the length of the chain the tests serve.
const FixtureBlocks = 10

// FixtureStore builds the test chain (small profile, seed 21) and a store
// holding it, proven up to proven.
func FixtureStore(t testing.TB, proven uint64) (*workload.Chain, *store.Store) {
	t.Helper()
	return FixtureStoreAt(t, FixtureBlocks, proven)
}

// FixtureStoreAt is FixtureStore with only the chain's first committed
// blocks applied (the rest are the chain's, to apply later).
func FixtureStoreAt(t testing.TB, committed int, proven uint64) (*workload.Chain, *store.Store) {
	t.Helper()
	p, _ := workload.ProfileByName("small")
	c, err := workload.BuildChain(21, p, FixtureBlocks, 1000)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), c.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for i, b := range c.Blocks[:committed] {
		if _, err := st.ApplyBlock(ctx, b); err != nil {
			t.Fatal(err)
		}
		if n := uint64(i + 1); n <= proven {
			if err := st.ApplyProof(ctx, n, block.Prove(c.Keys.Prover, n, c.States[n].Commitment).Encode()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c, st
}
