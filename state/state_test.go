package state_test

import (
	"errors"
	"testing"

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
