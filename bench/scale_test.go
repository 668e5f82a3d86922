package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"storesync/workload"
)

// TestMain lets the test binary be the scale scenario's child and
// grandchild, as the bench binary is.
func TestMain(m *testing.M) {
	if scaleChild(os.Args[1:]) {
		return
	}
	goleak.VerifyTestMain(m)
}

func TestParseScaleSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []float64
		ok   bool
	}{
		{"1e5", []float64{1e5}, true},
		{"1e7, 1e5,1e6,1e5", []float64{1e5, 1e6, 1e7}, true},
		{"2.5e5", []float64{2.5e5}, true},
		{"4096", nil, false}, // genesis already holds that
		{"1e5,x", nil, false},
		{"", nil, false},
		{"Inf", nil, false},
	} {
		got, err := parseScaleSizes(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseScaleSizes(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseScaleBlocks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint64
		ok   bool
	}{
		{"1e3", []uint64{1000}, true},
		{"1e5, 1e3,1e3,2500", []uint64{1000, 2500, 100000}, true},
		{"1", []uint64{1}, true},
		{"0", nil, false},
		{"1.5", nil, false},
		{"1e9", nil, false},
		{"1e3,x", nil, false},
		{"", nil, false},
		{"NaN", nil, false},
	} {
		got, err := parseScaleBlocks(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseScaleBlocks(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestScaleBlocksFor(t *testing.T) {
	// Each block adds 100 notes + 50 nullifiers + 8 accounts = 158 keys.
	c := &scaleCache{}
	for range 10 {
		prev := blockCount{}
		if len(c.counts) > 0 {
			prev = c.counts[len(c.counts)-1]
		}
		c.counts = append(c.counts, blockCount{notes: prev.notes + 100, nullifiers: prev.nullifiers + 50})
	}
	g := float64(workload.GenesisAccounts)
	for _, tc := range []struct {
		size float64
		n    uint64
		ok   bool
	}{
		{g + 1, 1, true},
		{g + 158, 1, true},
		{g + 159, 2, true},
		{g + 1580, 10, true},
		{g + 1581, 11, false}, // past the counts
	} {
		if n, ok := c.blocksFor(tc.size); n != tc.n || ok != tc.ok {
			t.Errorf("blocksFor(%g) = %d, %v; want %d, %v", tc.size, n, ok, tc.n, tc.ok)
		}
	}
}

// TestScaleQuick runs the scenario as `go run ./bench scale --quick` does,
// on a fresh cache, then checks the cache serves, keeps and builds states.
func TestScaleQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("grows a 10^5-key store and a 10^3-block one and measures them: about 40 s")
	}
	dir, plots := t.TempDir(), t.TempDir()
	res, err := scaleRun(true, "", "", dir, plots)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 {
		t.Fatalf("%d rows, want 1 (--quick measures 1e5 only)", len(res.Rows))
	}
	r := res.Rows[0]
	if r.Keys < 1e5 || r.Keys > 1e5+10_000 || r.Keys != r.Nullifiers+r.Notes+r.Accounts {
		t.Errorf("keys %d = %d nullifiers + %d notes + %d accounts: want the first state past 1e5", r.Keys, r.Nullifiers, r.Notes, r.Accounts)
	}
	if r.OpenS <= 0 || r.ReopenCleanS <= 0 || r.ReopenKillS <= 0 || r.RSSOpenMB <= 0 || r.RSSBlocksMB <= 0 || r.BytesPerKey <= 0 {
		t.Errorf("a measure is missing: %+v", r)
	}
	if r.Large.Blocks != 10 || r.Standard.Blocks != 20 || r.Large.TotalMs <= 0 || r.Standard.TotalMs <= 0 {
		t.Errorf("apply: large %+v, standard %+v", r.Large, r.Standard)
	}
	if r.KillRecovered < r.KillTip || r.KillRecovered > r.KillTip+1 || r.KillTip != r.Blocks+10+20+scaleKillAfter {
		t.Errorf("killed at reported tip %d, recovered %d; the state had %d blocks", r.KillTip, r.KillRecovered, r.Blocks)
	}
	if len(r.Reads) != len(scaleReadMethods) {
		t.Fatalf("reads: %+v", r.Reads)
	}
	for _, rr := range r.Reads {
		if rr.PerS <= 0 || rr.Errors > 0 {
			t.Errorf("reads %s: %+v", rr.Method, rr)
		}
	}
	for _, f := range []string{"scale-apply.png", "scale-open.png"} {
		if _, err := os.Stat(filepath.Join(plots, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "scratch")); err == nil {
		t.Error("the scratch copy was left behind")
	}

	// --quick measures the small chain at 10^3 blocks.
	if len(res.BlockRows) != 1 {
		t.Fatalf("%d block rows, want 1 (--quick measures 1e3 only)", len(res.BlockRows))
	}
	br := res.BlockRows[0]
	if br.Blocks != 1000 || br.OpenS <= 0 || br.ReopenCleanS <= 0 || br.ReopenKillS <= 0 || br.RSSOpenMB <= 0 || br.BytesPerBlock <= 0 {
		t.Errorf("a measure of the chain length is missing: %+v", br)
	}
	if br.KillRecovered < br.KillTip || br.KillRecovered > br.KillTip+1 || br.KillTip < br.Blocks+scaleKillAfter {
		t.Errorf("chain length: killed at reported tip %d, recovered %d; the state had %d blocks", br.KillTip, br.KillRecovered, br.Blocks)
	}
	if len(br.Reads) != len(scaleBlocksReadMethods) {
		t.Fatalf("chain length reads: %+v", br.Reads)
	}
	for _, rr := range br.Reads {
		if rr.PerS <= 0 || rr.Errors > 0 {
			t.Errorf("chain length reads %s: %+v", rr.Method, rr)
		}
	}
	sc, err := openScaleCache(filepath.Join(dir, scaleSmallDir), scaleSmallChain)
	if err != nil {
		t.Fatal(err)
	}
	if src, err := sc.stateAt(1000); err != nil || src != sc.path("base") {
		t.Errorf("stateAt(1000) = %s, %v; want base", src, err)
	}
	if src, err := sc.stateAt(10); err != nil || src != sc.snapshot(10) {
		t.Errorf("stateAt(10) = %s, %v; want a snapshot", src, err)
	}
	sc.close()

	c, err := openScaleCache(dir, scaleLargeChain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	// The state measured is served again without growing.
	if src, n, err := c.stateFor(1e5); err != nil || n != r.Blocks || src != c.path("base") {
		t.Fatalf("stateFor(1e5) = %s, %d, %v; want base at block %d", src, n, err, r.Blocks)
	}
	// A smaller one is built beside base, from genesis.
	small, _ := c.blocksFor(5e4)
	if src, n, err := c.stateFor(5e4); err != nil || n != small || src != c.snapshot(small) {
		t.Fatalf("stateFor(5e4) = %s, %d, %v; want a snapshot at block %d", src, n, err, small)
	}
	// A larger one grows base, keeping what it held.
	if src, n, err := c.stateFor(1.2e5); err != nil || n <= r.Blocks || src != c.path("base") {
		t.Fatalf("stateFor(1.2e5) = %s, %d, %v; want base grown past block %d", src, n, err, r.Blocks)
	}
	if !exists(c.snapshot(r.Blocks)) {
		t.Errorf("growing base did not keep its state at block %d", r.Blocks)
	}
	if tip, err := c.baseTip(); err != nil || c.keysAt(tip) < 1.2e5 {
		t.Errorf("base tip %d (%d keys), %v", tip, c.keysAt(tip), err)
	}
}
