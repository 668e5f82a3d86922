// Package testnet starts real nodes for tests: a primary on loopback with a
// fresh data directory, and the checks tests share (same chain, waiting on a
// condition, a log shown only on failure). Test code only.
package testnet

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"storesync/primary"
	"storesync/store"
)

// Quiet is a logger that drops everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// LogOnFailure returns a logger whose lines are printed only if the test
// fails: quiet when all is well, the whole story when it is not.
func LogOnFailure(t testing.TB, name string) *slog.Logger {
	t.Helper()
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("log of %s:\n%s", name, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Primary is a primary node for a test; Stop ends it early (it also ends
// with the test).
type Primary struct {
	*primary.Node
	Config primary.Config // as started, the listeners' chosen ports filled in
	Stop   func()
}

// StartPrimary runs a primary producing a `small` block every interval
// (seed 9, proofs 150±50 ms behind), with every listener on loopback.
// change, if not nil, adjusts the configuration first.
func StartPrimary(t testing.TB, interval time.Duration, change func(*primary.Config)) *Primary {
	t.Helper()
	dir := t.TempDir()
	if _, err := primary.Init(dir, "test", 9); err != nil {
		t.Fatal(err)
	}
	cfg := primary.Config{
		DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Produce: true,
		BlockInterval: interval, Profile: "small", Seed: 9,
		ProveDelay: 150 * time.Millisecond, ProveJitter: 50 * time.Millisecond,
		ShutdownGrace: time.Second, Log: Quiet(),
	}
	if change != nil {
		change(&cfg)
	}
	return RunPrimary(t, cfg)
}

// RunPrimary runs a primary on an existing data directory (Init done), as
// after a restart: same directory, and the same addresses when cfg names
// them.
func RunPrimary(t testing.TB, cfg primary.Config) *Primary {
	t.Helper()
	n, err := primary.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.InternalListen = n.PublicAddr(), n.InternalAddr()
	if cfg.HTTPListen != "" {
		cfg.HTTPListen = n.HTTPAddr()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &Primary{Node: n, Config: cfg, Stop: stop}
}

// GenesisOf is the path of a primary's genesis file.
func GenesisOf(p *primary.Node) string {
	return filepath.Join(filepath.Dir(p.Store().Dir()), primary.GenesisFile)
}

// WaitFor polls cond until it holds, and fails the test after within.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitForExplained(t, within, what, cond, nil)
}

// WaitForExplained is WaitFor whose failure also prints what explain
// returns then: the state of the parts the condition was waiting on.
func WaitForExplained(t testing.TB, within time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			if explain != nil {
				t.Fatalf("timed out after %s waiting for %s\n%s", within, what, explain())
			}
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SameChain checks that b holds exactly a's blocks up to b's tip: the same
// commitment at every height, and the same roots at the tip.
func SameChain(t testing.TB, a, b *store.Store) {
	t.Helper()
	sa, sb := a.Snapshot(), b.Snapshot()
	if sb.Committed() > sa.Committed() {
		t.Fatalf("follower at %d is ahead of its source at %d", sb.Committed(), sa.Committed())
	}
	for n := uint64(0); n <= sb.Committed(); n++ {
		ca, erra := sa.State.Chain.LeafAt(n)
		cb, errb := sb.State.Chain.LeafAt(n)
		if erra != nil || errb != nil {
			t.Fatalf("block %d: %v %v", n, erra, errb)
		}
		if ca != cb {
			t.Fatalf("block %d differs", n)
		}
	}
	ha, err := sa.Header(context.Background(), sb.Committed())
	if err != nil {
		t.Fatal(err)
	}
	if ha.AccountRoot != sb.State.Accounts.Root() || ha.NullifierRoot != sb.State.Nullifiers.Root() {
		t.Fatalf("roots differ at block %d", sb.Committed())
	}
}
