package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"storesync/block"
	"storesync/internal/diskfault"
	"storesync/merkle"
	"storesync/workload"
)

// chains are built once per profile and length and shared by the tests: a
// chain is deterministic, and building one costs as much as applying it.
var (
	chainsMu sync.Mutex
	chains   = map[string]*workload.Chain{}
)

func testChain(tb testing.TB, profile string, n int) *workload.Chain {
	tb.Helper()
	chainsMu.Lock()
	defer chainsMu.Unlock()
	key := fmt.Sprintf("%s/%d", profile, n)
	if c, ok := chains[key]; ok {
		return c
	}
	p, err := workload.ProfileByName(profile)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := workload.BuildChain(7, p, n, 1000)
	if err != nil {
		tb.Fatal(err)
	}
	chains[key] = c
	return c
}

func openStore(tb testing.TB, dir string, c *workload.Chain) *Store {
	tb.Helper()
	s, err := Open(dir, c.Genesis)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s
}

// faultDir returns a data directory whose SQLite side and block files are
// two small file systems of their own (8 MB each), for a test to fill one.
func faultDir(tb testing.TB) string {
	dir := tb.TempDir()
	diskfault.MountTmpfs(tb, dir, "8m")
	blocks := filepath.Join(dir, "blocks")
	if err := os.Mkdir(blocks, 0o755); err != nil {
		tb.Fatal(err)
	}
	diskfault.MountTmpfs(tb, blocks, "8m")
	return dir
}

func applyAll(tb testing.TB, s *Store, blocks []*block.Block) {
	tb.Helper()
	for _, b := range blocks {
		if _, err := s.ApplyBlock(context.Background(), b); err != nil {
			tb.Fatalf("apply block %d: %v", b.Header.Number, err)
		}
	}
}

// fingerprint captures everything a rejected block must leave unchanged:
// tips, roots, the size of every file, and the row count of every table.
type fingerprint struct {
	committed, proven    uint64
	commitment           merkle.Hash
	accounts, nullifiers merkle.Hash
	chain                merkle.Hash
	files                map[string]int64
	rows                 map[string]int
	stateTip             merkle.Hash
}

func takeFingerprint(tb testing.TB, s *Store) fingerprint {
	tb.Helper()
	sn := s.Snapshot()
	fp := fingerprint{
		committed: sn.Committed(), proven: sn.Proven, commitment: sn.State.Commitment,
		accounts: sn.State.Accounts.Root(), nullifiers: sn.State.Nullifiers.Root(), chain: sn.State.Chain.Root(),
		files: map[string]int64{}, rows: map[string]int{},
	}
	for _, sub := range []string{"blocks", "proofs"} {
		entries, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				tb.Fatal(err)
			}
			fp.files[sub+"/"+e.Name()] = info.Size()
		}
	}
	for _, table := range []string{"blocks", "notes", "mmr", "proofs", "meta"} {
		var n int
		if err := s.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		fp.rows[table] = n
	}
	var tips [2]uint64
	if err := s.db.QueryRow(`SELECT committed, proven FROM tips`).Scan(&tips[0], &tips[1]); err != nil {
		tb.Fatal(err)
	}
	fp.rows["tips.committed"], fp.rows["tips.proven"] = int(tips[0]), int(tips[1])
	// The state database is rewritten in place (its files compact by
	// themselves): its tip record names everything the trees hold, once the
	// trees of the blocks deferred are written (as Close writes them).
	s.mu.Lock()
	if !s.closed {
		if err := s.persistDeferred(s.snap.Load(), time.Now()); err != nil {
			tb.Logf("write the deferred trees: %v", err)
		}
	}
	s.mu.Unlock()
	// Node ids are not compared: a replay may write the same trees in
	// other records than the applies did.
	tip, ok, err := s.state.readTip()
	if err != nil || !ok {
		tb.Fatalf("state database tip record: %v (found %v)", err, ok)
	}
	fp.stateTip = merkle.Sum(fmt.Appendf(nil, "%d %s %d %s %d", tip.block, tip.accounts.Hash, tip.accounts.Size, tip.nullifiers.Hash, tip.nullifiers.Size))
	return fp
}

func sameFingerprint(tb testing.TB, want, got fingerprint) {
	tb.Helper()
	if want.committed != got.committed || want.proven != got.proven || want.commitment != got.commitment ||
		want.accounts != got.accounts || want.nullifiers != got.nullifiers || want.chain != got.chain || want.stateTip != got.stateTip {
		tb.Errorf("state changed: before %+v, after %+v", want, got)
	}
	for k, v := range want.files {
		if got.files[k] != v {
			tb.Errorf("file %s changed: %d -> %d", k, v, got.files[k])
		}
	}
	if len(got.files) != len(want.files) {
		tb.Errorf("files changed: %v -> %v", want.files, got.files)
	}
	for k, v := range want.rows {
		if got.rows[k] != v {
			tb.Errorf("rows %s changed: %d -> %d", k, v, got.rows[k])
		}
	}
}

func proveBlock(tb testing.TB, s *Store, c *workload.Chain, n int) {
	tb.Helper()
	p := block.Prove(c.Keys.Prover, uint64(n), c.States[n].Commitment).Encode()
	if err := s.ApplyProof(context.Background(), uint64(n), p); err != nil {
		tb.Fatalf("apply proof %d: %v", n, err)
	}
}
