package primary

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
	"storesync/store"
	"storesync/workload"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(dir string) Config {
	return Config{
		DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0",
		Produce: true, BlockInterval: 40 * time.Millisecond, Profile: "small", Seed: 3,
		ProveDelay: 300 * time.Millisecond, ProveJitter: 100 * time.Millisecond,
		ShutdownGrace: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// start runs a node until the test ends (or stop is called) and returns it
// with a client of its public API.
func start(t *testing.T, cfg Config) (*Node, storev1.StoreClient, func() error) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	conn, err := grpc.NewClient(n.PublicAddr(), append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		conn.Close()
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return n, storev1.NewStoreClient(conn), stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProducesAndProvesInOrder: a primary produces blocks, and proves them
// strictly in order, none before its due time (timestamp + delay - jitter).
func TestProducesAndProvesInOrder(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, "test", 3); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	n, client, stop := start(t, cfg)
	st := n.Store()
	var lastProven uint64
	waitFor(t, 20*time.Second, "10 proven blocks", func() bool {
		now := time.Now()
		sn := st.Snapshot()
		if sn.Proven < lastProven {
			t.Fatalf("proven tip went back from %d to %d", lastProven, sn.Proven)
		}
		if sn.Proven > sn.Committed() {
			t.Fatalf("proven tip %d past committed %d", sn.Proven, sn.Committed())
		}
		if sn.Proven > 0 {
			h, err := sn.Header(context.Background(), sn.Proven)
			if err != nil {
				t.Fatal(err)
			}
			earliest := time.UnixMilli(int64(h.Timestamp)).Add(cfg.ProveDelay - cfg.ProveJitter)
			if now.Before(earliest) {
				t.Fatalf("block %d proven at %s, before its earliest due time %s", sn.Proven, now, earliest)
			}
		}
		lastProven = sn.Proven
		return sn.Proven >= 10
	})
	resp, err := client.Status(context.Background(), &storev1.StatusRequest{})
	if err != nil || resp.CommittedTip < 10 {
		t.Fatalf("status over gRPC: %v %+v", err, resp)
	}
	if committed, proven := st.Tips(); proven >= committed {
		t.Logf("proofs caught up with commits (%d/%d); the delay should keep them behind", proven, committed)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestWritePathOnlyInternal: ApplyBlock is Unimplemented on the public
// listener and works on the internal one, rejecting a bad block with
// InvalidArgument and committing a good one.
func TestWritePathOnlyInternal(t *testing.T) {
	dir := t.TempDir()
	p, _ := workload.ProfileByName("small")
	c, err := workload.BuildChain(5, p, 3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Genesis.Save(filepath.Join(dir, GenesisFile)); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.Produce = false
	n, _, _ := start(t, cfg)
	ctx := context.Background()
	dial := func(addr string) storev1.InternalClient {
		conn, err := grpc.NewClient(addr, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return storev1.NewInternalClient(conn)
	}
	pub, internal := dial(n.PublicAddr()), dial(n.InternalAddr())
	if _, err := pub.ApplyBlock(ctx, &storev1.ApplyBlockRequest{Block: c.Blocks[0].Encode()}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ApplyBlock on the public listener: got %v, want Unimplemented", err)
	}
	if _, err := internal.ApplyBlock(ctx, &storev1.ApplyBlockRequest{Block: c.Blocks[1].Encode()}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("out-of-order block: got %v, want InvalidArgument", err)
	}
	for _, b := range c.Blocks {
		r, err := internal.ApplyBlock(ctx, &storev1.ApplyBlockRequest{Block: b.Encode()})
		if err != nil || r.CommittedTip != b.Header.Number {
			t.Fatalf("apply block %d: %v %+v", b.Header.Number, err, r)
		}
	}
	if got := n.Store().Snapshot().State.Commitment; got != c.States[3].Commitment {
		t.Fatal("internal ApplyBlock did not commit the chain")
	}
}

// TestShutdownMidProduction: stopping while blocks are being produced and
// proven loses nothing: the store reopens at the tip it reached, and a
// restarted primary continues the same chain from there.
func TestShutdownMidProduction(t *testing.T) {
	dir := t.TempDir()
	g, err := Init(dir, "test", 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.BlockInterval = 10 * time.Millisecond
	n, _, stop := start(t, cfg)
	waitFor(t, 20*time.Second, "5 blocks", func() bool { c, _ := n.Store().Tips(); return c >= 5 })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	st, err := store.Open(filepath.Join(dir, StoreDir), g)
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	committed, proven := st.Tips()
	st.Close()
	if committed < 5 {
		t.Fatalf("reopened at %d, below the 5 blocks seen before shutdown", committed)
	}
	n2, _, _ := start(t, cfg)
	waitFor(t, 20*time.Second, "production to resume", func() bool { c, _ := n2.Store().Tips(); return c >= committed+3 })
	if _, p := n2.Store().Tips(); p < proven {
		t.Fatalf("proven tip went back from %d to %d", proven, p)
	}
}
