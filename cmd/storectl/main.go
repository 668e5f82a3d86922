// Command storectl works on a store's data directory directly: it can fill
// one with a synthetic chain (demo) and show what one holds (inspect).
//
//	storectl demo    --data-dir D [--profile standard] [--blocks 300] [--seed 1]
//	storectl inspect --data-dir D
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"storesync/block"
	"storesync/genesis"
	"storesync/store"
	"storesync/workload"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(ctx, os.Args[2:])
	case "inspect":
		err = inspect(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storectl:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  storectl demo    --data-dir D [--profile small|standard|large] [--blocks N] [--seed S]
      Create a store with a synthetic chain (dev keys from the seed) and apply
      generated blocks until it holds N, with proofs two blocks behind.
  storectl inspect --data-dir D
      Open the store (repairing what a crash left) and print its tips and roots.`)
	os.Exit(2)
}

// openDir opens the store in dir/ with the genesis file beside it.
func openDir(dir string) (*store.Store, error) {
	g, err := genesis.Load(filepath.Join(dir, "genesis.json"))
	if err != nil {
		return nil, err
	}
	return store.Open(filepath.Join(dir, "data"), g)
}

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	dir := fs.String("data-dir", "devnet/store", "directory for genesis.json and the store")
	profileName := fs.String("profile", "standard", "block size: small (16 txs), standard (256) or large (2048)")
	blocks := fs.Uint64("blocks", 300, "apply blocks until the store holds this many")
	seed := fs.Uint64("seed", 1, "seed of the synthetic chain and its dev keys")
	_ = fs.Parse(args)
	profile, err := workload.ProfileByName(*profileName)
	if err != nil {
		return err
	}
	keys := workload.DevKeys(*seed)
	gpath := filepath.Join(*dir, "genesis.json")
	if _, err := os.Stat(gpath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		g, err := workload.Genesis(fmt.Sprintf("demo-%d", *seed), *seed, keys, uint64(time.Now().UnixMilli()))
		if err != nil {
			return err
		}
		if err := g.Save(gpath); err != nil {
			return err
		}
	}
	s, err := openDir(*dir)
	if err != nil {
		return err
	}
	defer s.Close()
	gen := workload.NewGenerator(*seed, profile, keys.Producer, s)
	start, _ := s.Tips()
	fmt.Printf("store %s: at block %d, applying %s blocks up to %d\n", s.Dir(), start, profile.Name, *blocks)
	var sum store.Report
	var bytes int
	t0, last := time.Now(), time.Now()
	for {
		sn := s.Snapshot()
		n := sn.Committed()
		if n >= *blocks || ctx.Err() != nil {
			break
		}
		b, err := gen.Next(sn.State, max(uint64(time.Now().UnixMilli()), sn.State.Header.Timestamp))
		if err != nil {
			return err
		}
		r, err := s.ApplyBlock(ctx, b)
		if err != nil {
			return err
		}
		sum.Validate, sum.Trees, sum.BlockFile, sum.SQLite, sum.State = sum.Validate+r.Validate, sum.Trees+r.Trees, sum.BlockFile+r.BlockFile, sum.SQLite+r.SQLite, sum.State+r.State
		bytes += r.Bytes
		if _, proven := s.Tips(); n+1 >= proven+3 {
			c, err := s.Snapshot().State.Chain.LeafAt(proven + 1)
			if err != nil {
				return err
			}
			p := block.Prove(keys.Prover, proven+1, c)
			if err := s.ApplyProof(ctx, proven+1, p.Encode()); err != nil {
				return err
			}
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			done := n + 1 - start
			rate := float64(done) / time.Since(t0).Seconds()
			eta := time.Duration(float64(*blocks-n-1)/rate) * time.Second
			fmt.Printf("block %d/%d  %.0f blocks/s  %.1f MB/s  eta %s\n", n+1, *blocks, rate, float64(bytes)/1e6/time.Since(t0).Seconds(), eta)
		}
	}
	committed, proven := s.Tips()
	done := committed - start
	if done > 0 {
		el := time.Since(t0)
		per := func(d time.Duration) time.Duration { return d / time.Duration(done) }
		fmt.Printf("applied %d blocks in %s (%.0f blocks/s, %.1f MB/s); per block: validate %s, trees %s, block file %s, sqlite %s, state %s\n",
			done, el.Round(time.Millisecond), float64(done)/el.Seconds(), float64(bytes)/1e6/el.Seconds(),
			per(sum.Validate), per(sum.Trees), per(sum.BlockFile), per(sum.SQLite), per(sum.State))
	}
	fmt.Printf("committed tip %d, proven tip %d\n", committed, proven)
	return nil
}

func inspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ExitOnError)
	dir := fs.String("data-dir", "devnet/store", "directory holding genesis.json and the store")
	_ = fs.Parse(args)
	t0 := time.Now()
	s, err := openDir(*dir)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("opened in      %s\n", time.Since(t0).Round(time.Millisecond))
	sn := s.Snapshot()
	h := sn.State.Header
	fmt.Printf("chain          %s (genesis %s)\n", s.Genesis().ChainID, s.Genesis().Commitment.Short())
	fmt.Printf("committed tip  %d  %s  %s\n", sn.Committed(), sn.State.Commitment, time.UnixMilli(int64(h.Timestamp)).UTC().Format(time.RFC3339))
	fmt.Printf("proven tip     %d\n", sn.Proven)
	fmt.Printf("accounts       %d  root %s\n", sn.State.Accounts.Len(), h.AccountRoot)
	fmt.Printf("nullifiers     %d  root %s\n", sn.State.Nullifiers.Len(), h.NullifierRoot)
	fmt.Printf("chain root     %s\n", sn.State.Chain.Root())
	return nil
}
