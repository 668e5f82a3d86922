package store

import (
	"bytes"
	"context"
	"os"
	"testing"

	"storesync/state"
)

// FuzzApplyBlock feeds mutations of a valid next block to a store. Whatever
// the bytes, ApplyBlockBytes either applies exactly the valid block or
// rejects with a typed error and changes nothing on any medium.
func FuzzApplyBlock(f *testing.F) {
	c := testChain(f, "small", 4)
	valid := c.Blocks[3].Encode()
	f.Add(valid)
	f.Add(c.Blocks[2].Encode())
	f.Add(valid[:len(valid)-1])
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 1
	f.Add(flipped)

	var s *Store
	fresh := func(t *testing.T) {
		if s != nil {
			s.Close()
		}
		dir, err := os.MkdirTemp("", "fuzz-apply-")
		if err != nil {
			t.Fatal(err)
		}
		s = openStore(t, dir, c)
		applyAll(t, s, c.Blocks[:3])
	}
	f.Cleanup(func() {
		if s != nil {
			s.Close()
			os.RemoveAll(s.Dir())
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if s == nil {
			fresh(t)
		}
		before := quickFingerprint(t, s)
		_, err := s.ApplyBlockBytes(context.Background(), data)
		if err == nil {
			if !bytes.Equal(data, valid) {
				t.Fatalf("applied a block that is not the valid one")
			}
			dir := s.Dir()
			fresh(t)
			os.RemoveAll(dir)
			return
		}
		if state.Rejection(err) == nil {
			t.Fatalf("error is not a rejection: %v", err)
		}
		if after := quickFingerprint(t, s); after != before {
			t.Fatalf("rejected block changed the store: %+v -> %+v", before, after)
		}
	})
}

// quickFingerprint is the part of the fingerprint cheap enough to take twice
// per fuzz input (TestRejections takes the whole one): tips and roots in
// memory, the tips row, and the size of the block file.
type quick struct {
	committed, proven, dbCommitted uint64
	commitment, accounts, nulls    [32]byte
	fileSize                       int64
}

func quickFingerprint(t *testing.T, s *Store) quick {
	sn := s.Snapshot()
	q := quick{committed: sn.Committed(), proven: sn.Proven, commitment: sn.State.Commitment,
		accounts: sn.State.Accounts.Root(), nulls: sn.State.Nullifiers.Root()}
	if err := s.db.QueryRow(`SELECT committed FROM tips`).Scan(&q.dbCommitted); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(s.blocks.path(0))
	if err != nil {
		t.Fatal(err)
	}
	q.fileSize = st.Size()
	return q
}
