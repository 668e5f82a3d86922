package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"storesync/merkle"
)

func segPath(dir, kind string, seg int) string {
	return filepath.Join(dir, kind, fmt.Sprintf("%08d.seg", seg))
}

// TestOpenCutsUncommittedTail: bytes and segments written after the last
// commit (a crash between block file and SQLite commit) are discarded.
func TestOpenCutsUncommittedTail(t *testing.T) {
	c := testChain(t, "small", 8)
	dir := t.TempDir()
	s := openStore(t, dir, c)
	applyAll(t, s, c.Blocks[:5])
	before := takeFingerprint(t, s)
	s.Close()

	appendTo := func(path string, data []byte) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(segPath(dir, "blocks", 0), c.Blocks[5].Encode())
	appendTo(segPath(dir, "blocks", 1), []byte("half a block"))
	appendTo(segPath(dir, "proofs", 0), []byte("a proof never committed"))

	s = openStore(t, dir, c)
	defer s.Close()
	sameFingerprint(t, before, takeFingerprint(t, s))
	applyAll(t, s, c.Blocks[5:])
	if s.Snapshot().State.Commitment != c.States[8].Commitment {
		t.Fatal("store diverged after recovery")
	}
}

// TestOpenDetectsDamage: damage to committed data fails Open with an error
// naming the file and the block, and Open changes nothing.
func TestOpenDetectsDamage(t *testing.T) {
	c := testChain(t, "small", 8)
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"block file missing", func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, "blocks", 0)); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5", "missing"}},
		{"block file cut short", func(t *testing.T, dir string) {
			p := segPath(dir, "blocks", 0)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-1); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5"}},
		{"tip block corrupt", func(t *testing.T, dir string) {
			p := segPath(dir, "blocks", 0)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-100] ^= 0xff
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5", "corrupt"}},
		{"proof file missing", func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, "proofs", 0)); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "proof 2", "missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, c)
			applyAll(t, s, c.Blocks[:5])
			for n := 1; n <= 2; n++ {
				proveBlock(t, s, c, n)
			}
			s.Close()
			tc.damage(t, dir)
			_, err := Open(dir, c.Genesis)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("got %v, want ErrDamaged", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// copyDir copies a directory tree (a store's state database, to put back an
// older one later).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestOpenReplaysStateBehind: a state database that lost its last batches
// (a power loss before its log was synced) or was deleted is brought to the
// committed tip by Open from the block files, with no operator action, and
// the store goes on from there.
func TestOpenReplaysStateBehind(t *testing.T) {
	c := testChain(t, "standard", 12)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, saved string)
	}{
		{"lost its last batches", func(t *testing.T, dir, saved string) {
			if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
				t.Fatal(err)
			}
			copyDir(t, saved, filepath.Join(dir, "state"))
		}},
		{"deleted", func(t *testing.T, dir, _ string) {
			if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, saved := t.TempDir(), filepath.Join(t.TempDir(), "state")
			s := openStore(t, dir, c)
			applyAll(t, s, c.Blocks[:4])
			s.Close()
			copyDir(t, filepath.Join(dir, "state"), saved)
			s = openStore(t, dir, c)
			applyAll(t, s, c.Blocks[4:9])
			before := takeFingerprint(t, s)
			notes := c.Blocks[7].NoteIDs()[:3]
			s.Close()

			tc.setup(t, dir, saved)
			s = openStore(t, dir, c)
			defer s.Close()
			sameFingerprint(t, before, takeFingerprint(t, s))
			got, err := s.Snapshot().NotesByID(context.Background(), notes)
			if err != nil || len(got) != len(notes) {
				t.Fatalf("notes of a replayed block: %d of %d (%v)", len(got), len(notes), err)
			}
			applyAll(t, s, c.Blocks[9:])
			if s.Snapshot().State.Commitment != c.States[12].Commitment {
				t.Fatal("store diverged after replaying the state database")
			}
		})
	}
}

// TestOpenRollsStateBack: a state database ahead of SQLite's committed tip
// (a commit reported and then lost) goes back to the version it kept for
// that tip, and the blocks after it apply again.
func TestOpenRollsStateBack(t *testing.T) {
	c := testChain(t, "standard", 10)
	dir, saved := t.TempDir(), t.TempDir()
	s := openStore(t, dir, c)
	applyAll(t, s, c.Blocks[:5])
	before := takeFingerprint(t, s)
	s.Close()
	for _, f := range []string{"store.db", "store.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(saved, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dir, c)
	applyAll(t, s, c.Blocks[5:8])
	s.Close()
	// SQLite back at block 5, the state database at 8.
	for _, f := range []string{"store.db", "store.db-wal"} {
		data, err := os.ReadFile(filepath.Join(saved, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "store.db-shm"))
	s = openStore(t, dir, c)
	defer s.Close()
	after := takeFingerprint(t, s)
	// Open cuts the block file back; the tip record names the same trees,
	// with a later next node id (ids are never reused).
	before.files, after.files = nil, nil
	before.stateTip, after.stateTip = merkle.Hash{}, merkle.Hash{}
	sameFingerprint(t, before, after)
	applyAll(t, s, c.Blocks[5:])
	if s.Snapshot().State.Commitment != c.States[10].Commitment {
		t.Fatal("store diverged after rolling the state database back")
	}
}

// TestOldSnapshotsAndPruning: a snapshot taken before many blocks still
// answers while its version is retained; once pruned, it fails with
// ErrSnapshotGone rather than a wrong answer; and pruning keeps the state
// database from growing with every version.
func TestOldSnapshotsAndPruning(t *testing.T) {
	c := testChain(t, "standard", 20)
	oldBlocks, oldAge, oldDefer := stateRetainBlocks, stateRetainAge, stateDeferBlocks
	t.Cleanup(func() { stateRetainBlocks, stateRetainAge, stateDeferBlocks = oldBlocks, oldAge, oldDefer })
	// A version a block: the trees written at each.
	stateRetainBlocks, stateRetainAge, stateDeferBlocks = 4, 0, 1

	// Few levels pinned, so that a purged cache sends the old snapshot's
	// reads to the disk: a tree this small is pinned whole by default.
	o := DefaultOptions
	o.PinnedLevels = 4
	s, err := OpenWith(t.TempDir(), c.Genesis, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	applyAll(t, s, c.Blocks[:3])
	old := s.Snapshot()
	applyAll(t, s, c.Blocks[3:5])
	// The old snapshot's reads must reach the disk.
	s.state.src.Purge()
	acct := c.Blocks[2].Body.Accounts[0]
	if v, _, ok, err := old.Account(acct.ID); err != nil || !ok || v != acct.Commitment {
		t.Fatalf("retained snapshot: account %s = %s %v (%v)", acct.ID.Short(), v.Short(), ok, err)
	}
	applyAll(t, s, c.Blocks[5:])
	s.state.src.Purge()
	// Every version older than the retained ones is gone from disk: reading
	// the old snapshot's root through a cold cache fails as it should.
	var gone bool
	for _, u := range c.Blocks[2].Body.Accounts {
		if _, _, _, err := old.Account(u.ID); errors.Is(err, ErrSnapshotGone) {
			gone = true
			break
		} else if err != nil {
			t.Fatalf("pruned snapshot: %v, want ErrSnapshotGone", err)
		}
	}
	if !gone {
		t.Fatal("a snapshot 17 versions old still reads every account: nothing was pruned")
	}
	if n := len(s.state.retained); n > stateRetainBlocks+1 {
		t.Fatalf("%d versions retained, want at most %d", n, stateRetainBlocks+1)
	}
}

// TestDeferredTrees: the trees' nodes of the last blocks are written only
// every few blocks, yet every reader sees the tip (its notes by ID
// included), a clean stop writes them (the next Open replays nothing), and
// a stop without Close loses nothing: Open replays what was deferred.
func TestDeferredTrees(t *testing.T) {
	c := testChain(t, "standard", 12)
	oldBlocks := stateDeferBlocks
	t.Cleanup(func() { stateDeferBlocks = oldBlocks })
	stateDeferBlocks = 5

	dir := t.TempDir()
	s := openStore(t, dir, c)
	if got := s.Replayed(); got != 1 {
		t.Fatalf("a fresh store replayed %d blocks, want 1 (genesis)", got)
	}
	applyAll(t, s, c.Blocks[:3])
	if s.state.tip != 0 || s.state.deferred.blocks != 3 {
		t.Fatalf("after 3 blocks the state database is at block %d with %d deferred, want 0 and 3", s.state.tip, s.state.deferred.blocks)
	}
	sn := s.Snapshot()
	notes := c.Blocks[2].NoteIDs()[:3]
	if got, err := sn.NotesByID(context.Background(), notes); err != nil || len(got) != len(notes) {
		t.Fatalf("notes of a deferred block: %d of %d (%v)", len(got), len(notes), err)
	}
	nf := c.Blocks[2].Body.Nullifiers[0]
	if st, err := sn.Nullifiers([]merkle.Hash{nf}); err != nil || st[0].SpentAt != 3 {
		t.Fatalf("nullifier of a deferred block: %+v (%v)", st, err)
	}
	applyAll(t, s, c.Blocks[3:5])
	if s.state.tip != 5 || s.state.deferred.blocks != 0 {
		t.Fatalf("after 5 blocks the state database is at block %d with %d deferred, want 5 and 0", s.state.tip, s.state.deferred.blocks)
	}
	applyAll(t, s, c.Blocks[5:9])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, c)
	if got := s.Replayed(); got != 0 {
		t.Errorf("after a clean stop Open replayed %d blocks, want 0", got)
	}
	if s.Snapshot().State.Commitment != c.States[9].Commitment {
		t.Fatal("reopened store is not at block 9")
	}

	// Without Close: what is deferred and what the memtable held are
	// replayed from the block files.
	applyAll(t, s, c.Blocks[9:11])
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	s.Close()
	r := openStore(t, crashed, c)
	defer r.Close()
	if got := r.Replayed(); got < 2 {
		t.Errorf("after a stop without Close Open replayed %d blocks, want at least the 2 deferred", got)
	}
	if r.Snapshot().State.Commitment != c.States[11].Commitment {
		t.Fatal("store copied without Close is not at block 11")
	}
	applyAll(t, r, c.Blocks[11:])
}
