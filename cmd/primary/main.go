// Command primary runs the primary store node: the store, its public read
// API, its internal write path and the built-in block producer and prover.
//
//	primary init --data-dir D [--chain-id ID] [--seed S]
//	primary run  --data-dir D [--listen ADDR] [--internal-listen ADDR] ...
//
// Every flag can also be set from the environment as PRIMARY_<FLAG>, e.g.
// PRIMARY_BLOCK_INTERVAL=500ms. Run `primary run --help` for the list.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"storesync/cmd/internal/cli"
	"storesync/flagenv"
	"storesync/primary"
)

const envPrefix = "PRIMARY"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "init":
		err = initCmd(os.Args[2:])
	case "run":
		err = runCmd(os.Args[2:])
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "primary: unknown command %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "primary:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  primary init --data-dir D [--chain-id ID] [--seed S]
      Create keys and the genesis file of a new chain in D.
  primary run --data-dir D [flags]
      Serve the store and produce and prove blocks. primary run --help lists the flags.`)
	os.Exit(2)
}

func initCmd(args []string) error {
	fs := flag.NewFlagSet("init", flag.ExitOnError)
	dir := fs.String("data-dir", "primary-data", "directory for keys, genesis.json and the store")
	chainID := fs.String("chain-id", "devnet", "chain id written into the genesis file")
	seed := fs.Uint64("seed", 1, "seed of the initial accounts (use the same with run --seed)")
	fs.Usage = flagenv.Usage(fs, envPrefix, "primary init [flags]")
	_ = fs.Parse(args)
	if err := flagenv.Apply(fs, envPrefix); err != nil {
		return err
	}
	g, err := primary.Init(*dir, *chainID, *seed)
	if err != nil {
		return err
	}
	fmt.Printf("initialised %s: chain %q, genesis %s\n", *dir, g.ChainID, g.Commitment)
	return nil
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfg := primary.Config{}
	fs.StringVar(&cfg.DataDir, "data-dir", "primary-data", "directory made by primary init")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:7100", "address of the public read API")
	fs.StringVar(&cfg.InternalListen, "internal-listen", "127.0.0.1:7101", "address of the internal ApplyBlock API (keep it private)")
	fs.StringVar(&cfg.HTTPListen, "http-listen", "127.0.0.1:7180", "address of /livez and /status (empty: off)")
	fs.BoolVar(&cfg.Produce, "produce", true, "run the built-in block producer and prover")
	fs.DurationVar(&cfg.BlockInterval, "block-interval", time.Second, "time between produced blocks")
	fs.StringVar(&cfg.Profile, "profile", "standard", "size of produced blocks: small (16 txs), standard (256), large (2048)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the synthetic workload and of the prover's jitter")
	fs.DurationVar(&cfg.ProveDelay, "prove-delay", 3*time.Second, "a block is proven this long after its timestamp")
	fs.DurationVar(&cfg.ProveJitter, "prove-jitter", 500*time.Millisecond, "plus or minus up to this much (proofs stay in order)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 5*time.Second, "how long in-flight calls may finish on shutdown")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "PEM certificate of the public read API; empty: plain text")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLS.ClientCAFile, "client-ca", "", "PEM CA bundle: the read API then requires client certificates signed by it")
	cli.ReportFlags(fs, &cfg.Followers, &cfg.FollowerTimeout)
	cli.HoldFlags(fs, &cfg.Holds)
	fs.IntVar(&cfg.MinCopies, "min-copies", primary.DefaultMinCopies, "the replicated watermark watched: blocks durable on at least this many followers")
	fs.DurationVar(&cfg.WatermarkStall, "watermark-stall", primary.DefaultWatermarkStall, "log when the --min-copies watermark stands still this long while the tip moves")
	obs := cli.ObservabilityFlags(fs)
	cli.StoreFlags(fs, &cfg.Store)
	memLimit := cli.MemoryFlag(fs)
	fs.Usage = flagenv.Usage(fs, envPrefix, "primary run [flags]")
	_ = fs.Parse(args)
	if err := flagenv.Apply(fs, envPrefix); err != nil {
		return err
	}
	var flush func()
	var err error
	if cfg.Log, cfg.Tracing, flush, err = obs.Setup("storesync-primary", cfg.ShutdownGrace); err != nil {
		return err
	}
	defer flush()
	if lim := cli.SetMemoryLimit(*memLimit, cfg.Store, 0); lim > 0 {
		cfg.Log.Info("memory limit", "go_heap_mib", lim>>20)
	}
	node, err := primary.New(cfg)
	if err != nil {
		return err
	}
	return obs.Run(node.Run)
}
