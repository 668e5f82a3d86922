package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"storesync/block"
	"storesync/genesis"
)

// The crash test runs this test binary again as a child that applies blocks
// (and proofs, two blocks behind) to a store, and kills it with SIGKILL at
// random instants. The child says what it committed on stdout, after each
// commit returns; the parent checks that every reopen is consistent and
// keeps everything the child said it committed.
const (
	crashChildEnv  = "STORESYNC_CRASH_CHILD"
	crashGroupsEnv = "STORESYNC_CRASH_GROUPS" // the seed of the child's group sizes
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// crashChild opens the store in dir/store and applies the blocks of
// dir/blocks.bin from its tip on, printing "opened N P commitment" once open
// and then "committed N" and "proven N" as each commit returns. Blocks go
// in groups (ApplyBlocks) of 1 to 8, drawn from the seed in
// crashGroupsEnv, so that kills land inside groups too: between a group's
// file writes, its transaction and its publish.
func crashChild(dir string) error {
	g, err := genesis.Load(filepath.Join(dir, "genesis.json"))
	if err != nil {
		return err
	}
	prover, err := os.ReadFile(filepath.Join(dir, "prover.key"))
	if err != nil {
		return err
	}
	blocks, err := readBlocks(filepath.Join(dir, "blocks.bin"))
	if err != nil {
		return err
	}
	s, err := Open(filepath.Join(dir, "store"), g)
	if err != nil {
		return err
	}
	defer s.Close()
	sn := s.Snapshot()
	fmt.Printf("opened %d %d %s\n", sn.Committed(), sn.Proven, sn.State.Commitment)
	ctx := context.Background()
	groupSeed, err := strconv.ParseUint(os.Getenv(crashGroupsEnv), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", crashGroupsEnv, err)
	}
	rng := rand.New(rand.NewPCG(groupSeed, 1))
	for rest := blocks[sn.Committed():]; len(rest) > 0; {
		k := 1
		if rng.IntN(2) == 0 {
			k = 2 + rng.IntN(7)
		}
		k = min(k, len(rest))
		group := make([]*block.Block, k)
		for i, data := range rest[:k] {
			if group[i], err = block.Decode(data); err != nil {
				return err
			}
		}
		rest = rest[k:]
		if _, err := s.ApplyBlocks(ctx, group); err != nil {
			return err
		}
		committed, proven := s.Tips()
		fmt.Printf("committed %d\n", committed)
		if committed >= proven+3 {
			n := proven + 1
			p := block.Prove(prover, n, s.Snapshot().State.Chain.Leaf(n))
			if err := s.ApplyProof(ctx, n, p.Encode()); err != nil {
				return err
			}
			fmt.Printf("proven %d\n", n)
		}
	}
	return nil
}

func writeBlocks(path string, blocks []*block.Block) error {
	var out []byte
	for _, b := range blocks {
		data := b.Encode()
		out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
	}
	return os.WriteFile(path, out, 0o644)
}

func readBlocks(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) > 0 {
		n := binary.LittleEndian.Uint32(data)
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	return out, nil
}

// TestCrashRecovery: at least 50 SIGKILLs at seeded random instants (set
// STORESYNC_CRASH_SEED to replay a run), the child applying blocks alone
// and in groups; every reopen is consistent, holds a prefix of the chain
// with everything the child reported committed, and the store reaches the
// end.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const kills = 50
	seed := uint64(1)
	if v := os.Getenv("STORESYNC_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	c := testChain(t, "small", 1200)
	dir := t.TempDir()
	if err := c.Genesis.Save(filepath.Join(dir, "genesis.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prover.key"), c.Keys.Prover, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeBlocks(filepath.Join(dir, "blocks.bin"), c.Blocks); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	var reported, reportedProven uint64 // what children said they committed
	midApply := 0                       // kills that hit a child after it opened
	total := uint64(len(c.Blocks))
	for run := 0; ; run++ {
		kill := run < kills
		afterOpen := rng.IntN(4) != 0
		delay := time.Duration(rng.IntN(150_000)) * time.Microsecond
		if afterOpen {
			delay /= 4
		}
		out, err := runCrashChild(t, dir, kill, afterOpen, delay, rng.Uint64())
		if !kill && err != nil {
			t.Fatalf("run %d (no kill): %v\n%s", run, err, out)
		}
		opened, committed, proven := parseChild(t, out)
		if opened == nil {
			continue // killed before it finished opening
		}
		if kill {
			midApply++
		}
		// Every reopen keeps what was reported and is a state of the chain.
		if opened.committed < reported || opened.proven < reportedProven {
			t.Fatalf("run %d (seed %d): reopened at %d/%d, but %d/%d were reported committed/proven", run, seed, opened.committed, opened.proven, reported, reportedProven)
		}
		if opened.committed > total || opened.commitment != c.States[opened.committed].Commitment.String() {
			t.Fatalf("run %d (seed %d): reopened at block %d with commitment %s, not the chain's", run, seed, opened.committed, opened.commitment)
		}
		reported, reportedProven = max(reported, committed, opened.committed), max(reportedProven, proven, opened.proven)
		if !kill {
			break
		}
	}
	s := openStore(t, filepath.Join(dir, "store"), c)
	defer s.Close()
	if sn := s.Snapshot(); sn.Committed() != total || sn.State.Commitment != c.States[total].Commitment {
		t.Fatalf("final store at %d, want %d with the chain's commitment", sn.Committed(), total)
	}
	t.Logf("%d kills (%d after the store opened), seed %d, %d blocks", kills, midApply, seed, total)
}

type openedLine struct {
	committed, proven uint64
	commitment        string
}

// runCrashChild runs one child. With kill, it is killed delay after it
// starts, or, with afterOpen, delay after it reports the store open (most
// kills should land while blocks are being applied, not during start-up).
func runCrashChild(t *testing.T, dir string, kill, afterOpen bool, delay time.Duration, groupSeed uint64) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s=%d", crashGroupsEnv, groupSeed))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var timer *time.Timer
	arm := func() { timer = time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) }) }
	if kill && !afterOpen {
		arm()
	}
	var out strings.Builder
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		if kill && afterOpen && timer == nil && strings.HasPrefix(line, "opened ") {
			arm()
		}
		if err != nil {
			break
		}
	}
	if timer != nil {
		timer.Stop()
	}
	err = cmd.Wait()
	if err != nil && !kill {
		return out.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	if kill && err != nil && stderr.Len() > 0 {
		t.Fatalf("child failed on its own: %v: %s", err, stderr.String())
	}
	return out.String(), nil
}

func parseChild(t *testing.T, out string) (opened *openedLine, committed, proven uint64) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "opened" && len(f) == 4:
			o := &openedLine{commitment: f[3]}
			o.committed, _ = strconv.ParseUint(f[1], 10, 64)
			o.proven, _ = strconv.ParseUint(f[2], 10, 64)
			opened = o
		case f[0] == "committed" && len(f) == 2:
			committed, _ = strconv.ParseUint(f[1], 10, 64)
		case f[0] == "proven" && len(f) == 2:
			proven, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return opened, committed, proven
}
