package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"storesync/block"
	"storesync/internal/diskfault"
	"storesync/state"
)

// TestApplyBlocksGroups: blocks applied in groups of several sizes, one
// group across a segment boundary, give the store the state and the files
// applying them one by one gives (the chain's own states, each block's
// bytes back from its file, every note findable), each group moves the
// tips once, and a reopen agrees.
func TestApplyBlocksGroups(t *testing.T) {
	n := int(SegmentSpan) + 20
	c := testChain(t, "small", n)
	dir := t.TempDir()
	s := openStore(t, dir, c)
	defer func() { s.Close() }()
	sizes := []int{1, 2, 5, 64, 500}
	next := 0
	for i := 0; next < n; i++ {
		k := min(sizes[i%len(sizes)], n-next)
		if next < int(SegmentSpan)-3 && next+k > int(SegmentSpan)-3 {
			// Make one group hold blocks of both segments.
			k = int(SegmentSpan) + 5 - next
		}
		group := c.Blocks[next : next+k]
		changed := s.Changed()
		reps, err := s.ApplyBlocks(t.Context(), group)
		if err != nil {
			t.Fatalf("apply blocks %d..%d: %v", next+1, next+k, err)
		}
		if len(reps) != k {
			t.Fatalf("apply blocks %d..%d: %d reports, want %d", next+1, next+k, len(reps), k)
		}
		for j, r := range reps {
			if r.Number != uint64(next+j+1) || r.Group != k || r.Bytes != len(group[j].Encode()) {
				t.Fatalf("report %d of group %d..%d: block %d, group %d, %d bytes", j, next+1, next+k, r.Number, r.Group, r.Bytes)
			}
		}
		select {
		case <-changed:
		default:
			t.Fatalf("apply blocks %d..%d: Changed not closed", next+1, next+k)
		}
		next += k
		if committed, _ := s.Tips(); committed != uint64(next) {
			t.Fatalf("after group ending at %d the committed tip is %d", next, committed)
		}
		if s.Snapshot().State.Commitment != c.States[next].Commitment {
			t.Fatalf("after group ending at %d the state is not the chain's", next)
		}
	}
	check := func(s *Store) {
		t.Helper()
		sn := s.Snapshot()
		if sn.Committed() != uint64(n) || sn.State.Commitment != c.States[n].Commitment ||
			sn.State.Accounts.Root() != c.States[n].Accounts.Root() || sn.State.Nullifiers.Root() != c.States[n].Nullifiers.Root() {
			t.Fatalf("store at %d is not the chain's state %d", sn.Committed(), n)
		}
		for _, m := range []int{1, 2, int(SegmentSpan) - 1, int(SegmentSpan), int(SegmentSpan) + 1, n} {
			got, err := sn.BlockBytes(uint64(m))
			if err != nil {
				t.Fatalf("read block %d: %v", m, err)
			}
			if !bytes.Equal(got, c.Blocks[m-1].Encode()) {
				t.Fatalf("block %d read back differs from the block applied", m)
			}
			ids := c.Blocks[m-1].NoteIDs()
			notes, err := sn.NotesByID(t.Context(), ids[:1])
			if err != nil || len(notes) != 1 {
				t.Fatalf("note %s of block %d: %v (%d found)", ids[0].Short(), m, err, len(notes))
			}
		}
	}
	check(s)
	s.Close()
	s = openStore(t, dir, c)
	check(s)
}

// TestApplyBlocksBadBlockInTheMiddle: a group whose third block is bad
// commits the two before it, returns the third's rejection, and applies
// nothing of it or after it (the files and rows are those of the prefix
// applied alone); a block that spends a nullifier an earlier block of its
// own group spent is rejected as a double spend. The rest applies after.
func TestApplyBlocksBadBlockInTheMiddle(t *testing.T) {
	c := testChain(t, "small", 12)
	ref := openStore(t, t.TempDir(), c)
	defer ref.Close()
	applyAll(t, ref, c.Blocks[:5])
	s := openStore(t, t.TempDir(), c)
	defer func() { s.Close() }()
	applyAll(t, s, c.Blocks[:3])

	spentInGroup := c.Blocks[3].Body.Nullifiers[0] // block 4, in the group
	parent := t
	for _, tc := range []struct {
		name   string
		mutate func(b *block.Block)
		check  state.Check
	}{
		{"bad signature", func(b *block.Block) { b.Signature[3] ^= 1 }, state.CheckSignature},
		{"double spend of the group's own block", func(b *block.Block) {
			b.Body.Nullifiers = sortedWith(b.Body.Nullifiers, spentInGroup)
			b.Sign(c.Keys.Producer)
		}, state.CheckDoubleSpend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if committed, _ := s.Tips(); committed != 3 {
				t.Fatalf("tip %d before the group, want 3", committed)
			}
			bad := copyBlock(c.Blocks[5]) // block 6
			tc.mutate(bad)
			group := []*block.Block{c.Blocks[3], c.Blocks[4], bad, c.Blocks[6], c.Blocks[7]}
			reps, err := s.ApplyBlocks(t.Context(), group)
			r := state.Rejection(err)
			if r == nil || r.Number != 6 || r.Check != tc.check {
				t.Fatalf("group 4..8 with a bad block 6: %v, want a %q rejection of block 6", err, tc.check)
			}
			if len(reps) != 2 || reps[0].Number != 4 || reps[1].Number != 5 || reps[1].Group != 2 {
				t.Fatalf("group 4..8 with a bad block 6 reported %+v, want blocks 4 and 5 in a group of 2", reps)
			}
			got, want := takeFingerprint(t, s), takeFingerprint(t, ref)
			got.stateTip, want.stateTip = [32]byte{}, [32]byte{} // node ids differ by the groups
			sameFingerprint(t, want, got)
			// Back to block 3 for the next case: a fresh store, the same way.
			s.Close()
			s = openStore(t, parent.TempDir(), c)
			applyAll(t, s, c.Blocks[:3])
		})
	}
	if _, err := s.ApplyBlocks(t.Context(), c.Blocks[3:]); err != nil {
		t.Fatalf("the good blocks after the bad ones: %v", err)
	}
	if s.Snapshot().State.Commitment != c.States[12].Commitment {
		t.Fatal("store diverged after a group with a bad block")
	}
}

// TestApplyBlocksEmptyAndClosed: an empty group does nothing; a closed
// store refuses a group as it refuses a block.
func TestApplyBlocksEmptyAndClosed(t *testing.T) {
	c := testChain(t, "small", 3)
	s := openStore(t, t.TempDir(), c)
	if reps, err := s.ApplyBlocks(t.Context(), nil); err != nil || reps != nil {
		t.Fatalf("empty group: %v, %v", reps, err)
	}
	s.Close()
	if _, err := s.ApplyBlocks(t.Context(), c.Blocks); !errors.Is(err, ErrClosed) {
		t.Fatalf("group on a closed store: %v, want ErrClosed", err)
	}
}

// TestStageWhileCommitting: a group staged while the one before it is
// still to commit is validated on the state that one leaves, commits after
// it whatever order the commits are called in, and gives the chain's state;
// a group whose commit will write the trees, or blocks that do not follow
// the group staged last, wait for that commit and are validated on the
// committed state (the blocks committed meanwhile are rejected, as
// concurrent writers of one block are); a group staged on one whose commit
// the disk refused commits nothing (ErrStaleGroup), and its blocks stage
// again once the disk takes writes.
func TestStageWhileCommitting(t *testing.T) {
	c := testChain(t, "small", 14)
	dir := faultDir(t)
	s := openStore(t, dir, c)
	defer func() { s.Close() }()
	ctx := t.Context()
	stage := func(from, to int) *Staged {
		t.Helper()
		g, err := s.Stage(ctx, c.Blocks[from-1:to])
		if err != nil || g == nil || g.Blocks() != to-from+1 {
			t.Fatalf("stage %d..%d: %v", from, to, err)
		}
		return g
	}
	tip := func(want int) {
		t.Helper()
		if committed, _ := s.Tips(); committed != uint64(want) {
			t.Fatalf("committed tip %d, want %d", committed, want)
		}
		if s.Snapshot().State.Commitment != c.States[want].Commitment {
			t.Fatalf("at block %d the state is not the chain's", want)
		}
	}

	g1 := stage(1, 3)
	g2 := stage(4, 5)
	if g2.parent != g1 {
		t.Fatal("blocks 4..5 were not validated on the group of 1..3 still to commit")
	}
	tip(0) // nothing is visible before its commit
	// The second commit called first waits for the first.
	second := make(chan error, 1)
	go func() {
		_, err := s.Commit(ctx, g2)
		second <- err
	}()
	if reps, err := s.Commit(ctx, g1); err != nil || len(reps) != 3 {
		t.Fatalf("commit 1..3: %d reports, %v", len(reps), err)
	}
	if err := <-second; err != nil {
		t.Fatalf("commit 4..5 staged on 1..3: %v", err)
	}
	tip(5)

	// Blocks that do not follow the group staged last: validated on the
	// committed state once that group commits, where block 6 is in.
	g3 := stage(6, 6)
	again := make(chan error, 1)
	go func() {
		g, err := s.Stage(ctx, c.Blocks[5:7])
		if g != nil {
			_, _ = s.Commit(ctx, g)
		}
		again <- err
	}()
	if _, err := s.Commit(ctx, g3); err != nil {
		t.Fatal(err)
	}
	if r := state.Rejection(<-again); r == nil || r.Check != state.CheckNumber {
		t.Fatalf("block 6 staged again while its first staging committed: %v, want a rejection by number", r)
	}
	tip(6)

	// A group whose commit writes the trees: the next one waits for it.
	old := stateDeferBlocks
	stateDeferBlocks = 1
	g4 := stage(7, 7)
	stateDeferBlocks = old
	if !g4.persist {
		t.Fatal("a group past the deferral bound does not write the trees")
	}
	staged := make(chan *Staged, 1)
	go func() {
		g, err := s.Stage(ctx, c.Blocks[7:8])
		if err != nil {
			t.Error(err)
		}
		staged <- g
	}()
	if _, err := s.Commit(ctx, g4); err != nil {
		t.Fatal(err)
	}
	g5 := <-staged
	if g5 == nil || g5.parent != nil || g5.base != g4.published {
		t.Fatal("the group after one writing the trees was not validated on the committed state")
	}
	if _, err := s.Commit(ctx, g5); err != nil {
		t.Fatal(err)
	}
	tip(8)

	// The disk refuses the commit: the group staged on it is stale.
	g6 := stage(9, 10)
	g7 := stage(11, 12)
	filler := filepath.Join(dir, "filler")
	diskfault.Fill(t, filler)
	if _, err := s.Commit(ctx, g6); err == nil {
		t.Fatal("commit on a full disk succeeded")
	}
	if reps, err := s.Commit(ctx, g7); !errors.Is(err, ErrStaleGroup) || len(reps) != 0 {
		t.Fatalf("commit of a group staged on a failed one: %d reports, %v; want ErrStaleGroup", len(reps), err)
	}
	tip(8)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyBlocks(ctx, c.Blocks[8:]); err != nil {
		t.Fatalf("blocks 9.. staged again: %v", err)
	}
	tip(14)
	want := takeFingerprint(t, s)
	s.Close()
	s = openStore(t, dir, c)
	sameFingerprint(t, want, takeFingerprint(t, s))
}
