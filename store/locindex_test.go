package store

import (
	"bytes"
	"context"
	"testing"

	"storesync/block"
)

// TestLocIndex reads blocks and proofs other than the tip's: what a commit
// wrote costs no query, a reopened store reads a run in order with one
// query per locReadAhead items, reads out of order one query each, and
// every read returns the bytes that were applied.
func TestLocIndex(t *testing.T) {
	const n = 600
	c := testChain(t, "small", n)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, c)
	proofs := make([][]byte, n)
	for i := range proofs {
		proofs[i] = block.Prove(c.Keys.Prover, uint64(i+1), c.States[i+1].Commitment).Encode()
	}
	for i := 0; i < n; i += 64 {
		if _, err := s.ApplyBlocks(ctx, c.Blocks[i:min(i+64, n)]); err != nil {
			t.Fatalf("apply blocks %d..: %v", i+1, err)
		}
		if err := s.ApplyProofs(ctx, uint64(i+1), proofs[i:min(i+64, n)]); err != nil {
			t.Fatalf("apply proofs %d..: %v", i+1, err)
		}
	}
	readBlock := func(s *Store, m int) {
		t.Helper()
		got, err := s.Snapshot().BlockBytes(uint64(m))
		if err != nil {
			t.Fatalf("read block %d: %v", m, err)
		}
		if !bytes.Equal(got, c.Blocks[m-1].Encode()) {
			t.Fatalf("block %d read back differs from what was applied", m)
		}
	}
	readProof := func(s *Store, m int) {
		t.Helper()
		got, err := s.Snapshot().ProofBytes(uint64(m))
		if err != nil {
			t.Fatalf("read proof %d: %v", m, err)
		}
		if !bytes.Equal(got, proofs[m-1]) {
			t.Fatalf("proof %d read back differs from what was applied", m)
		}
	}
	queries := func(s *Store) (int64, int64) { return s.blockLocs.queries.Load(), s.proofLocs.queries.Load() }

	// Committed here: every location is the commit's own.
	for m := 1; m <= n; m++ {
		readBlock(s, m)
		readProof(s, m)
	}
	if b, p := queries(s); b != 0 || p != 0 {
		t.Fatalf("reads of what this store committed made %d block and %d proof location queries, want none", b, p)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: nothing in the index.
	s = openStore(t, dir, c)
	defer s.Close()
	for _, m := range []int{500, 100, 300} { // out of order: one row each
		readBlock(s, m)
		readProof(s, m)
	}
	if b, p := queries(s); b != 3 || p != 3 {
		t.Fatalf("3 reads out of order made %d block and %d proof location queries, want 3 each", b, p)
	}
	// In order from 101 (100 is in the index): 101..356 in one query, then
	// 357..599 (the tip, 600, has its location in the snapshot).
	for m := 101; m <= n; m++ {
		readBlock(s, m)
		readProof(s, m)
	}
	if b, p := queries(s); b != 5 || p != 5 {
		t.Fatalf("reads of 101..%d in order made %d block and %d proof location queries, want 5 each (2 runs)", n, b, p)
	}
	// From the first block: 1 alone (genesis is never read through the
	// index), then 2..257 in one run.
	for m := 1; m <= 100; m++ {
		readBlock(s, m)
	}
	if b, _ := queries(s); b != 7 {
		t.Fatalf("reads of 1..100 made %d more block location queries, want 2", b-5)
	}
}
