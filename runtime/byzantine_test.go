package runtime

import (
	"context"
	"testing"
	"time"

	"storesync/actors"
)

// corrupting serves what a real upstream serves, except for the chosen
// blocks, which it alters: in the body (the signature still verifies, so
// only ApplyBlock's checks catch it) or in the header (the Fetcher's
// signature check catches it).
type corrupting struct {
	actors.Upstream
	body, header map[uint64]bool
}

func (c *corrupting) Name() string { return "corrupting" }

func (c *corrupting) GetBlock(ctx context.Context, n uint64, includeProof bool) ([]byte, []byte, error) {
	b, p, err := c.Upstream.GetBlock(ctx, n, includeProof)
	if err != nil || b == nil {
		return b, p, err
	}
	b = append([]byte(nil), b...)
	switch {
	case c.body[n]:
		b[len(b)-64-1] ^= 1 // last byte before the signature: the last tx header
	case c.header[n]:
		b[1+12] ^= 1 // inside the previous commitment
	}
	return b, p, nil
}

// TestBadBlocksNeverApplied: with a corrupting upstream and an honest one,
// no altered block is ever applied, the sync goes on without a stall, and
// the rejections are counted.
func TestBadBlocksNeverApplied(t *testing.T) {
	p := startPrimary(t, 10*time.Millisecond)
	waitFor(t, 30*time.Second, "20 blocks", func() bool { c, _ := p.Store().Tips(); return c >= 20 })
	honest, err := dialUpstream(p.PublicAddr(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer honest.close()
	evil := &corrupting{Upstream: honest, body: map[uint64]bool{}, header: map[uint64]bool{}}
	for n := uint64(2); n <= 20; n += 3 {
		evil.body[n] = true
		evil.header[n+1] = true
	}
	f, err := New(Config{
		DataDir: t.TempDir(), Genesis: genesisOf(p), Upstreams: []string{p.PublicAddr()}, Listen: "127.0.0.1:0", ShutdownGrace: time.Second,
		Engine: actors.Config{Upstreams: []actors.Upstream{evil}, FetchWindow: 8, PollInterval: 20 * time.Millisecond,
			RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, SuspectFor: 50 * time.Millisecond},
		Log: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	startFollower(t, f)
	target, _ := p.Store().Tips()
	waitFor(t, 30*time.Second, "the follower to sync past the corrupted blocks", func() bool { c, _ := f.Store().Tips(); return c >= target })
	sameChain(t, p.Store(), f.Store())
	if r := f.Engine().Stats().Rejected.Load(); r == 0 {
		t.Fatal("no rejection counted: the corrupting upstream was never asked")
	}
}

// TestCatchUpInGroupsWithBadBlocks: a follower catching up a chain from a
// corrupting upstream commits in groups of several blocks (the window and
// credits let blocks wait), never applies an altered block (a bad block in
// the middle of a group: the blocks before it commit, it is fetched again),
// and ends with the primary's chain; with --group-blocks 1 every group is
// one block.
func TestCatchUpInGroupsWithBadBlocks(t *testing.T) {
	p := startPrimary(t, 5*time.Millisecond)
	waitFor(t, 30*time.Second, "200 blocks", func() bool { c, _ := p.Store().Tips(); return c >= 200 })
	for _, tc := range []struct {
		name   string
		blocks int // --group-blocks
	}{{"groups", 64}, {"groups off", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			honest, err := dialUpstream(p.PublicAddr(), nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer honest.close()
			evil := &corrupting{Upstream: honest, body: map[uint64]bool{}, header: map[uint64]bool{}}
			for n := uint64(30); n <= 190; n += 40 {
				evil.body[n] = true
			}
			f, err := New(Config{
				DataDir: t.TempDir(), Genesis: genesisOf(p), Upstreams: []string{p.PublicAddr()}, Listen: "127.0.0.1:0", ShutdownGrace: time.Second,
				Engine: actors.Config{Upstreams: []actors.Upstream{evil, honest}, PollInterval: 20 * time.Millisecond, GroupBlocks: tc.blocks,
					RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, SuspectFor: time.Minute},
				Log: quiet(),
			})
			if err != nil {
				t.Fatal(err)
			}
			startFollower(t, f)
			waitFor(t, 60*time.Second, "the follower to catch up 200 blocks", func() bool {
				c, _ := f.Store().Tips()
				return c >= 200
			})
			sameChain(t, p.Store(), f.Store())
			st := f.Engine().Stats()
			if st.Rejected.Load() == 0 {
				t.Error("no rejection counted: the corrupting upstream was never asked")
			}
			largest := 0
			for k := range st.GroupSizes {
				if st.GroupSizes[k].Load() > 0 {
					largest = k
				}
			}
			if tc.blocks == 1 && largest != 1 {
				t.Errorf("groups off: a group of %d blocks was committed", largest)
			}
			if tc.blocks != 1 && largest < 2 {
				t.Errorf("catching up 200 blocks, the largest group was %d blocks", largest)
			}
		})
	}
}
