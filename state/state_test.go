package state_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"storesync/block"
	"storesync/merkle"
	"storesync/state"
	"storesync/workload"
)

// TestApplyLeavesStateUntouched: Apply returns a new state and never changes
// the one it was called on, whether it accepts or rejects; so a reader may
// keep using a state while the next is computed.
func TestApplyLeavesStateUntouched(t *testing.T) {
	p, _ := workload.ProfileByName("small")
	c, err := workload.BuildChain(4, p, 4, 1000)
	if err != nil {
		t.Fatal(err)
	}
	rules := state.RulesOf(c.Genesis)
	s := c.States[3]
	roots := [4][32]byte{s.Commitment, s.Accounts.Root(), s.Nullifiers.Root(), s.Chain.Root()}
	leaves := s.Chain.Leaves()

	bad := *c.Blocks[3]
	bad.Header.AccountRoot[0] ^= 1
	bad.Sign(c.Keys.Producer)
	if _, err := s.Apply(&bad, rules); !errors.Is(err, state.ErrAccountRoot) {
		t.Fatalf("got %v, want ErrAccountRoot", err)
	}
	a, err := s.Apply(c.Blocks[3], rules)
	if err != nil {
		t.Fatal(err)
	}
	if a.State.Commitment != c.States[4].Commitment || a.State.Chain.Leaves() != leaves+1 {
		t.Fatal("applied state is not the chain's next state")
	}
	if got := [4][32]byte{s.Commitment, s.Accounts.Root(), s.Nullifiers.Root(), s.Chain.Root()}; got != roots || s.Chain.Leaves() != leaves {
		t.Fatal("Apply changed the state it was called on")
	}
	r := state.Rejection(func() error { _, err := s.Apply(c.Blocks[1], rules); return err }())
	if r == nil || r.Check != state.CheckNumber || r.Number != 4 {
		t.Fatalf("replayed block: got %+v, want a number rejection for block 4", r)
	}
}

// TestNullifierChecksInBlockOrder: a large block's nullifiers are looked up
// on several cores, and the failure reported is still the first in the
// block's order, spent or out of order, as checks one after another find.
func TestNullifierChecksInBlockOrder(t *testing.T) {
	p, _ := workload.ProfileByName("large")
	c, err := workload.BuildChain(5, p, 4, 1000)
	if err != nil {
		t.Fatal(err)
	}
	rules := state.RulesOf(c.Genesis)
	s, next := c.States[3], c.Blocks[3]
	spent := c.Blocks[2].Body.Nullifiers
	nfs := next.Body.Nullifiers
	n := len(nfs)
	if n < 1000 || len(spent) < 100 {
		t.Fatalf("block 4 spends %d nullifiers, block 3 %d: too few to check on several cores", n, len(spent))
	}
	// spentAt returns a spent nullifier and an index in [lo, hi) where it
	// can replace block 4's and keep the order.
	spentAt := func(lo, hi int) (int, merkle.Hash) {
		for _, x := range spent {
			i, _ := slices.BinarySearchFunc(nfs, x, func(a, b merkle.Hash) int { return bytes.Compare(a[:], b[:]) })
			if i >= lo && i < hi && i > 0 && i+1 < n {
				return i, x
			}
		}
		t.Fatalf("no spent nullifier sorts into positions %d to %d", lo, hi)
		return 0, merkle.Hash{}
	}
	// with returns block 4 with these nullifiers replaced, signed again.
	with := func(at map[int]merkle.Hash) *block.Block {
		b := *next
		b.Body.Nullifiers = slices.Clone(nfs)
		for i, x := range at {
			b.Body.Nullifiers[i] = x
		}
		b.Sign(c.Keys.Producer)
		return &b
	}
	early, x := spentAt(1, n/4)
	late, y := spentAt(3*n/4, n-8)
	for _, tc := range []struct {
		name  string
		b     *block.Block
		check state.Check
		names merkle.Hash
	}{
		{"two spent, one in each half", with(map[int]merkle.Hash{early: x, late: y}), state.CheckDoubleSpend, x},
		{"spent before disorder", with(map[int]merkle.Hash{early: x, n - 4: nfs[0]}), state.CheckDoubleSpend, x},
		// The one after the largest put early is the first out of order.
		{"disorder before spent", with(map[int]merkle.Hash{late: y, early: nfs[n-1]}), state.CheckBody, nfs[early+1]},
	} {
		_, err := s.Apply(tc.b, rules)
		r := state.Rejection(err)
		if r == nil || r.Check != tc.check || !strings.Contains(r.Reason, tc.names.Short()) {
			t.Errorf("%s: got %v, want a %v rejection naming %s", tc.name, err, tc.check, tc.names.Short())
		}
	}
}
