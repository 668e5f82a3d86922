// Command devnet runs a local devnet in one process: a primary producing
// and proving blocks, follower A following the primary and follower B
// following A, each on a fresh data directory and its own ports. Once a
// second it prints every store's committed and proven tips, its lag behind
// the primary, and the highest block the primary knows to be durable on
// both followers (its replicated watermark for two copies). Ctrl-C stops everything cleanly.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"storesync/actors"
	"storesync/cmd/internal/cli"
	"storesync/otel"
	"storesync/primary"
	"storesync/runtime"
	"storesync/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devnet:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("data-dir", "devnet", "parent directory of the three stores (wiped at start)")
	interval := flag.Duration("block-interval", time.Second, "time between blocks")
	profile := flag.String("profile", "standard", "block size: small, standard or large")
	proveDelay := flag.Duration("prove-delay", 3*time.Second, "proofs lag blocks by this much")
	logFile := flag.String("log", "devnet/devnet.log", "where the nodes' logs go (the terminal shows the table)")
	otlp := flag.String("otlp-endpoint", "", "send every node's traces over OTLP/gRPC here (e.g. 127.0.0.1:4317); empty: off")
	sample := cli.SampleFlag(flag.CommandLine)
	flag.Parse()
	tracing := func(service string, log *slog.Logger) trace.TracerProvider {
		if *otlp == "" {
			return nil
		}
		t, err := otel.SetupTracing(context.Background(), otel.TraceConfig{Service: service, Endpoint: *otlp, Sample: *sample, Log: log})
		if err != nil {
			fmt.Fprintln(os.Stderr, "devnet: tracing:", err)
			return nil
		}
		flushers = append(flushers, t)
		return t.Provider
	}

	if err := os.RemoveAll(*dir); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	var out io.Writer = io.Discard
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	// Every node's last spans go together, within the nodes' grace of the
	// signal (a collector that does not answer costs the exit no more),
	// before the log file closes.
	var stopAt time.Time
	defer func() {
		ctx, cancel := context.WithDeadline(context.Background(), cli.FlushDeadline(stopAt, shutdownGrace, time.Now()))
		defer cancel()
		var wg sync.WaitGroup
		for _, t := range flushers {
			wg.Go(func() { _ = t.Shutdown(ctx) })
		}
		wg.Wait()
	}()
	pdir := filepath.Join(*dir, "primary")
	if _, err := primary.Init(pdir, "devnet", 1); err != nil {
		return err
	}
	p, err := primary.New(primary.Config{DataDir: pdir, Listen: "127.0.0.1:7100", InternalListen: "127.0.0.1:7101", HTTPListen: "127.0.0.1:7180",
		Produce: true, BlockInterval: *interval, Profile: *profile, Seed: 1, ProveDelay: *proveDelay,
		ProveJitter: *proveDelay / 6, ShutdownGrace: shutdownGrace, Log: log.With("node", "primary"), Tracing: tracing("storesync-primary", log.With("node", "primary")),
		// Every reporter counts: the devnet's stores are all its own.
		Followers: []string{"any"}})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()

	gpath := filepath.Join(pdir, primary.GenesisFile)
	follow := func(name, listen, httpListen, upstream string) (*runtime.Follower, error) {
		return runtime.New(runtime.Config{DataDir: filepath.Join(*dir, name), Genesis: gpath, Upstreams: []string{upstream},
			Listen: listen, HTTPListen: httpListen, ShutdownGrace: shutdownGrace,
			Engine: actors.Config{PollInterval: 100 * time.Millisecond}, Reports: runtime.Reports{Followers: []string{"any"}},
			Log: log.With("node", name), Tracing: tracing("storesync-"+name, log.With("node", name))})
	}
	a, err := follow("follower-a", "127.0.0.1:7200", "127.0.0.1:7280", p.PublicAddr())
	if err != nil {
		return err
	}
	b, err := follow("follower-b", "127.0.0.1:7300", "127.0.0.1:7380", a.Addr())
	if err != nil {
		return err
	}
	for _, f := range []*runtime.Follower{a, b} {
		if err := f.Start(); err != nil {
			return err
		}
	}
	fmt.Printf("devnet up in %s (logs in %s)\n", *dir, *logFile)
	fmt.Printf("  primary     read API %s  internal %s  http %s\n", p.PublicAddr(), p.InternalAddr(), p.HTTPAddr())
	fmt.Printf("  follower-a  read API %s  http %s  (follows the primary)\n", a.Addr(), a.HTTPAddr())
	fmt.Printf("  follower-b  read API %s  http %s  (follows follower-a)\n", b.Addr(), b.HTTPAddr())
	fmt.Println("try: grpcurl -plaintext 127.0.0.1:7300 storesync.v1.Store/Status")
	fmt.Println("     ./bin/follower status --store http://127.0.0.1:7180   (the whole tree, from the primary's reports)")
	fmt.Printf("     status pages in a browser: http://%s/  http://%s/  http://%s/\n", p.HTTPAddr(), a.HTTPAddr(), b.HTTPAddr())
	fmt.Println("Ctrl-C to stop")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopAt = time.Now()
			errA, errB := a.Stop(), b.Stop()
			errP := <-pdone
			for _, err := range []error{errA, errB, errP} {
				if err != nil {
					return err
				}
			}
			return nil
		case <-tick.C:
			show(p, map[string]*store.Store{"follower-a": a.Store(), "follower-b": b.Store()})
		}
	}
}

// flushers are the tracer providers to flush at exit.
var flushers []*otel.Tracing

// shutdownGrace is every node's --shutdown-grace, and the time the last
// spans get after the signal.
const shutdownGrace = 2 * time.Second

// show prints the line of the second: every store's tips, and the
// primary's watermark for two copies (the highest block it has heard is
// durable on both followers).
func show(p *primary.Node, followers map[string]*store.Store) {
	pc, pp := p.Store().Tips()
	line := fmt.Sprintf("%s  primary %d/%d", time.Now().Format("15:04:05"), pc, pp)
	for _, name := range []string{"follower-a", "follower-b"} {
		c, pr := followers[name].Tips()
		line += fmt.Sprintf("  |  %s %d/%d lag %d", name, c, pr, int64(pc)-int64(c))
	}
	wm := "-"
	if n, ok := p.Replicas().Watermark(2); ok {
		wm = fmt.Sprint(n)
	}
	fmt.Printf("%s  |  backed up x2 %s   (committed/proven)\n", line, wm)
}
