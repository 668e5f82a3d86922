package reliability

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"storesync/actors"
	"storesync/genesis"
	"storesync/internal/testnet"
	"storesync/messages"
	"storesync/store"
)

// TestLostProofsCatchUp: a follower that comes back with blocks committed
// but their proofs lost (held in memory, out of order, when it was killed:
// what the crash loop leaves) asks for every missing proof, one ask per
// block since the read API serves a proof only with its block, and its
// proven tip reaches its committed tip with the primary's very proofs.
// Those proofs are long overdue, so they are asked several at a time: over
// a link with a round trip, one at a time would take a round trip each. The
// time is measured, not asserted.
func TestLostProofsCatchUp(t *testing.T) {
	p := testnet.StartPrimary(t, 10*time.Millisecond, nil)
	lost := scaled(uint64(300), 3000)
	testnet.WaitFor(t, wedged, fmt.Sprintf("the primary to prove %d blocks", lost), func() bool { _, pr := p.Store().Tips(); return pr >= lost })

	// The follower's store as a crash leaves it: the blocks, no proofs.
	dir := t.TempDir()
	g, err := genesis.Load(testnet.GenesisOf(p.Node))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(filepath.Join(dir, "store"), g)
	if err != nil {
		t.Fatal(err)
	}
	ps := p.Store().Snapshot()
	for n := uint64(1); n <= lost; n++ {
		raw, err := ps.BlockBytes(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ApplyBlockBytes(context.Background(), raw); err != nil {
			t.Fatalf("apply block %d: %v", n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A round trip of 10 ms to the primary.
	x := startProxy(t, p.PublicAddr())
	x.both("latency", "latency", map[string]any{"latency": 5})
	var asks atomic.Int64
	cfg := actors.Config{Hooks: &actors.Hooks{Receive: func(name string, msg any) {
		if _, ok := msg.(*messages.ProofAnswer); ok && name == actors.ProofTrackerName {
			asks.Add(1)
		}
	}}}
	start := time.Now()
	f := startFollowerIn(t, dir, x.Addr(), testnet.GenesisOf(p.Node), cfg)
	testnet.WaitFor(t, 2*wedged, fmt.Sprintf("the proven tip to reach block %d", lost), func() bool {
		_, pr := f.Store().Tips()
		return pr >= lost
	})
	took := time.Since(start)
	fs := f.Store().Snapshot()
	for n := uint64(1); n <= lost; n++ {
		got, err := fs.ProofBytes(n)
		if err != nil {
			t.Fatalf("proof %d on the follower: %v", n, err)
		}
		want, _ := ps.ProofBytes(n)
		if !bytes.Equal(got, want) {
			t.Fatalf("proof %d on the follower differs from the primary's", n)
		}
	}
	t.Logf("%d lost proofs found again in %s over a 10 ms round trip (%.0f proofs/s, %d asks answered)",
		lost, took.Round(time.Millisecond), float64(lost)/took.Seconds(), asks.Load())
}
