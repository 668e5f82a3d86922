package workload_test

import (
	"bytes"
	"testing"

	"storesync/block"
	"storesync/state"
	"storesync/workload"
)

// TestDeterministic: the same seed gives the same chain, and a generator that
// lost its cache (a restarted producer) continues it identically from the
// state and the chain's history.
func TestDeterministic(t *testing.T) {
	p, _ := workload.ProfileByName("standard")
	a, err := workload.BuildChain(11, p, 6, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := workload.BuildChain(11, p, 6, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Blocks {
		if !bytes.Equal(a.Blocks[i].Encode(), b.Blocks[i].Encode()) {
			t.Fatalf("block %d differs between runs", i+1)
		}
	}
	fresh := workload.NewGenerator(11, p, a.Keys.Producer, history(a.Blocks))
	next, err := fresh.Next(a.States[5], a.Blocks[5].Header.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(next.Encode(), a.Blocks[5].Encode()) {
		t.Fatal("a restarted generator does not continue the same chain")
	}
	c, _ := workload.BuildChain(12, p, 1, 1000)
	if c.Blocks[0].Header.Commitment() == a.Blocks[0].Header.Commitment() {
		t.Fatal("another seed gives the same chain")
	}
}

// TestProfiles: each profile's blocks have its transaction count, spend
// earlier notes and apply.
func TestProfiles(t *testing.T) {
	for _, p := range workload.Profiles {
		c, err := workload.BuildChain(3, p, workload.SpendDelay+1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		last := c.Blocks[len(c.Blocks)-1]
		if len(last.Body.Transactions) != p.Transactions || len(last.Body.Nullifiers) == 0 || len(last.Body.Notes) < p.Transactions {
			t.Fatalf("%s: %d txs, %d notes, %d nullifiers", p.Name, len(last.Body.Transactions), len(last.Body.Notes), len(last.Body.Nullifiers))
		}
		if _, err := c.States[len(c.Blocks)-1].Apply(last, state.RulesOf(c.Genesis)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := workload.ProfileByName("huge"); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

// history serves blocks 1..n from memory, as a store would.
type history []*block.Block

func (h history) Block(n uint64) (*block.Block, error) { return h[n-1], nil }
