// Command follower runs a follower store: it copies blocks and proofs from
// one or more upstream stores (a primary or other followers) through their
// read API, applies them with the same ApplyBlock the primary uses, and
// serves the read API from its own store.
//
//	follower run --data-dir D --genesis G --upstream ADDR [--upstream ADDR2] --listen ADDR --http-listen ADDR
//
// Every flag can also be set from the environment as FOLLOWER_<FLAG>, e.g.
// FOLLOWER_UPSTREAM=127.0.0.1:7100,127.0.0.1:7200. `follower run --help`
// lists them.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"storesync/actors"
	"storesync/cmd/internal/cli"
	"storesync/flagenv"
	"storesync/health"
	"storesync/runtime"
)

const envPrefix = "FOLLOWER"

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return fmt.Errorf("empty value")
	}
	*l = append(*l, v)
	return nil
}
func (l *listFlag) IsList() bool { return true }

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "run" && os.Args[1] != "status") {
		fmt.Fprintln(os.Stderr, `usage:
  follower run --data-dir D --genesis G --upstream ADDR [--upstream ADDR2] [flags]
      Follow the upstream stores and serve reads. follower run --help lists the flags.
  follower status --store HOST:PORT [--store ...] [--min-copies 2] [--json]
      Every store's tips, lag and readiness (from their HTTP /status), the
      stores below each (from their reports; the primary alone shows the whole
      tree), and the replicated watermark: the highest block durable on at
      least k followers.`)
		os.Exit(2)
	}
	cmd := run
	if os.Args[1] == "status" {
		cmd = statusCmd
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "follower:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfg := runtime.Config{}
	var ups, peers listFlag
	e := &cfg.Engine
	fs.StringVar(&cfg.DataDir, "data-dir", "follower-data", "directory of the follower's store")
	fs.StringVar(&cfg.Genesis, "genesis", "genesis.json", "genesis file of the chain (the trust anchor)")
	fs.Var(&ups, "upstream", "read API address of a store to follow; repeat for several (fetches spread, fail over)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:7200", "address of this follower's read API")
	fs.StringVar(&cfg.HTTPListen, "http-listen", "127.0.0.1:7280", "address of /livez and /status (empty: off)")
	fs.Var(&peers, "peer", "read API address of another store whose tip counts toward the chain tip (repeatable)")
	fs.Uint64Var(&cfg.Health.MaxLag, "max-lag", health.DefaultConfig.MaxLag, "ready iff the chain tip is at most this many blocks ahead")
	fs.DurationVar(&cfg.Health.StaleAfter, "health-stale-after", health.DefaultConfig.StaleAfter, "a store not heard from for this long does not count (none left: lag unknown, not ready)")
	fs.IntVar(&cfg.Health.Fall, "health-fall", health.DefaultConfig.Fall, "consecutive failing checks before turning not ready")
	fs.IntVar(&cfg.Health.Rise, "health-rise", health.DefaultConfig.Rise, "consecutive passing checks before turning ready")
	fs.DurationVar(&cfg.HealthEvery, "health-interval", time.Second, "how often upstreams and peers are asked for their tip")
	d := actors.DefaultConfig
	fs.IntVar(&e.FetchWindow, "fetch-window", d.FetchWindow, "blocks in flight or waiting to be applied, at most")
	fs.Int64Var(&e.FetchWindowBytes, "fetch-window-bytes", d.FetchWindowBytes, "bytes of blocks in flight or waiting, at most")
	fs.IntVar(&e.Credits, "credits", d.Credits, "blocks handed to the applier but not yet applied, at most: room for a group committing and a full one behind it")
	fs.IntVar(&e.GroupBlocks, "group-blocks", d.GroupBlocks, "blocks waiting to be applied that are committed together, at most (one block-file sync, one SQLite transaction); 1: every block alone, as it is delivered")
	fs.IntVar(&e.GroupBytes, "group-bytes", d.GroupBytes, "encoded bytes in one group, at most (a larger block is a group alone)")
	fs.DurationVar(&e.GroupTime, "group-time", d.GroupTime, "a group's expected apply time at the recent rate, at most, so the tip moves on a slow disk")
	fs.BoolVar(&e.NoOverlap, "no-overlap", d.NoOverlap, "validate the next group only once the one before has committed (by default a full group is validated while that one commits)")
	fs.DurationVar(&e.FetchTimeout, "fetch-timeout", d.FetchTimeout, "timeout of one GetBlockByNumber call")
	fs.DurationVar(&e.PollInterval, "poll-interval", d.PollInterval, "how often to ask for the next block once caught up")
	fs.DurationVar(&e.RetryInitial, "retry-initial", d.RetryInitial, "first retry delay after a failed call (doubles, with jitter)")
	fs.DurationVar(&e.RetryMax, "retry-max", d.RetryMax, "longest retry delay")
	fs.DurationVar(&e.SuspectFor, "suspect-for", d.SuspectFor, "how long an upstream that served a bad block is avoided")
	fs.DurationVar(&e.ProofMaxWait, "proof-max-wait", d.ProofMaxWait, "longest wait between asks for a proof that is late (the wait doubles from --poll-interval; 0: 16 poll intervals)")
	fs.DurationVar(&e.ProofMaxDelay, "proof-max-delay", d.ProofMaxDelay, "longest delay from a block's timestamp to its proof that the proof schedule learns (a proof is asked for at block time plus the learned delay)")
	fs.BoolVar(&e.NoHedge, "no-hedge", d.NoHedge, "never ask a second upstream for a block that is late (hedging is on with two or more upstreams)")
	fs.DurationVar(&e.HoldWait, "hold-wait", d.HoldWait, "once caught up, ask an upstream that holds calls to hold the probe for the next block this long (it answers when the block commits)")
	fs.BoolVar(&e.NoHold, "no-hold", d.NoHold, "never ask upstreams to hold calls: poll every --poll-interval")
	fs.DurationVar(&e.ProofGrace, "proof-grace", d.ProofGrace, "where an upstream proves blocks this soon after committing them, a held probe asks it to wait this long after the commit for the proof, so both come in one answer (at most this much lag; turned off while blocks come without proofs; 0: never)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 5*time.Second, "how long in-flight reads may finish on shutdown")
	t := &cfg.TLS
	fs.StringVar(&t.CertFile, "tls-cert", "", "PEM certificate of the read API (and of the HTTP listener with --http-tls); empty: plain text")
	fs.StringVar(&t.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.ClientCAFile, "client-ca", "", "PEM CA bundle: the listeners require a client certificate signed by it")
	fs.BoolVar(&t.HTTP, "http-tls", false, "serve the HTTP listener over TLS too, with --tls-cert and --client-ca")
	fs.StringVar(&t.UpstreamCAFile, "upstream-ca", "", "PEM CA bundle verifying upstreams and peers; dials them over TLS")
	fs.StringVar(&t.UpstreamCertFile, "upstream-cert", "", "PEM client certificate shown to upstreams and peers (dials them over TLS)")
	fs.StringVar(&t.UpstreamKeyFile, "upstream-key", "", "PEM private key of --upstream-cert")
	l, dl := &cfg.Limits, runtime.DefaultLimits
	fs.IntVar(&l.MaxRequestBytes, "max-request-bytes", dl.MaxRequestBytes, "largest request message a client may send")
	streams := fs.Uint("max-streams-per-conn", uint(dl.StreamsPerConn), "calls one client connection may have open at once")
	fs.IntVar(&l.ConcurrentReads, "max-concurrent-reads", dl.ConcurrentReads, "read calls running at once, over all connections")
	fs.IntVar(&l.QueuedReads, "max-queued-reads", dl.QueuedReads, "read calls waiting for a slot, at most; more are refused (RESOURCE_EXHAUSTED) unless it is their connection's only call")
	fs.DurationVar(&l.KeepaliveMinTime, "keepalive-min-time", dl.KeepaliveMinTime, "a client pinging more often than this is disconnected")
	fs.DurationVar(&l.KeepaliveTime, "keepalive-time", dl.KeepaliveTime, "ping a client connection silent for this long; drop it if the ping goes unanswered")
	fs.DurationVar(&l.IdleTimeout, "conn-idle-timeout", dl.IdleTimeout, "close a client connection without calls for this long")
	cli.ReportFlags(fs, &cfg.Reports.Followers, &cfg.Reports.Timeout)
	cli.HoldFlags(fs, &cfg.Holds)
	fs.StringVar(&cfg.Reports.Advertise, "advertise-addr", "", "read API address this follower tells its upstreams it serves on (empty: the bound --listen address)")
	cli.StoreFlags(fs, &cfg.Store)
	memLimit := cli.MemoryFlag(fs)
	restartLimit := fs.Int("restart-limit", d.Restart.Limit, "actor failures tolerated per minute before the follower stops with an error")
	obs := cli.ObservabilityFlags(fs)
	fs.Usage = flagenv.Usage(fs, envPrefix, "follower run [flags]")
	_ = fs.Parse(args)
	if err := flagenv.Apply(fs, envPrefix); err != nil {
		return err
	}
	cfg.Upstreams, cfg.Peers = ups, peers
	if *streams == 0 || *streams > 1<<31 {
		return fmt.Errorf("--max-streams-per-conn: want 1 to %d, got %d", 1<<31, *streams)
	}
	l.StreamsPerConn = uint32(*streams)
	if e.ProofGrace == 0 {
		e.ProofGrace = -1 // asked off (the engine's zero is its default)
	}
	e.Restart = d.Restart
	e.Restart.Limit = *restartLimit
	var flush func()
	var err error
	if cfg.Log, cfg.Tracing, flush, err = obs.Setup("storesync-follower", cfg.ShutdownGrace); err != nil {
		return err
	}
	defer flush()
	if lim := cli.SetMemoryLimit(*memLimit, cfg.Store, e.FetchWindowBytes); lim > 0 {
		cfg.Log.Info("memory limit", "go_heap_mib", lim>>20)
	}
	f, err := runtime.New(cfg)
	if err != nil {
		return err
	}
	return obs.Run(f.Run)
}
