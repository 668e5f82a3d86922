package store

import (
	"os"
	"path/filepath"
	"testing"

	"storesync/internal/diskfault"
	"storesync/state"
)

// TestApplyAfterStorageFailure: a disk that fills up makes ApplyBlock fail
// with a *StorageError that is not a rejection, and leaves the committed
// state as it was, whether the block file or the SQLite commit was refused
// (the latter after the block's bytes reached its file), for one block and
// for a group of five (ApplyBlocks: nothing of the group is applied). Once
// space is back, the same store applies the same blocks, and a reopen
// agrees.
func TestApplyAfterStorageFailure(t *testing.T) {
	c := testChain(t, "small", 10)
	for _, tc := range []struct {
		name  string
		full  string // the file system that fills up: "." (SQLite) or "blocks"
		group int    // blocks applied at once
	}{
		{"sqlite commit refused", ".", 1},
		{"block file refused", "blocks", 1},
		{"sqlite commit of a group refused", ".", 5},
		{"block file of a group refused", "blocks", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := faultDir(t)
			s := openStore(t, dir, c)
			t.Cleanup(func() { s.Close() })
			applyAll(t, s, c.Blocks[:5])
			before := takeFingerprint(t, s)

			filler := filepath.Join(dir, tc.full, "filler")
			diskfault.Fill(t, filler)
			group := c.Blocks[5 : 5+tc.group]
			reps, err := s.ApplyBlocks(t.Context(), group)
			if len(reps) != 0 {
				t.Errorf("apply on a full disk reported %d blocks applied", len(reps))
			}
			reason, ok := StorageFault(err)
			if !ok || reason != "no space left on device" || state.Rejection(err) != nil {
				t.Fatalf("apply on a full disk: %v (storage fault %v %q), want a storage fault, no space left", err, ok, reason)
			}
			after := takeFingerprint(t, s)
			delete(after.files, "blocks/filler")
			seg := "blocks/" + filepath.Base(segPath(dir, "blocks", 0))
			if tc.full == "." {
				// The blocks reached their file, the commit did not happen.
				want := before.files[seg]
				for _, b := range group {
					want += int64(len(b.Encode()))
				}
				if got := after.files[seg]; got != want {
					t.Errorf("block file is %d bytes after a refused commit, want %d (the blocks written, not committed)", got, want)
				}
				after.files[seg] = before.files[seg]
			}
			sameFingerprint(t, before, after)
			if _, err := s.Snapshot().BlockBytes(5); err != nil {
				t.Fatalf("read the tip on a full disk: %v", err)
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			applyAll(t, s, c.Blocks[5:])
			want := takeFingerprint(t, s)
			if want.commitment != c.States[10].Commitment {
				t.Fatal("store diverged after the disk was full")
			}
			s.Close()
			s = openStore(t, dir, c)
			sameFingerprint(t, want, takeFingerprint(t, s))
		})
	}
}
