package runtime

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"storesync/actors"
	"storesync/api"
	"storesync/api/storev1"
	"storesync/block"
	"storesync/health"
	"storesync/internal/testnet"
)

// quickHealth makes readiness tests fast: polls every 50 ms, stale after
// 400 ms, two checks to fall or rise.
var quickHealth = health.Config{MaxLag: 2, StaleAfter: 400 * time.Millisecond, Fall: 2, Rise: 2}

func healthFollower(t *testing.T, genesisPath string, upstreams, peers []string) *Follower {
	t.Helper()
	return healthFollowerWith(t, quickHealth, genesisPath, upstreams, peers)
}

// healthFollowerWith is healthFollower with readiness rules of its own.
func healthFollowerWith(t *testing.T, hc health.Config, genesisPath string, upstreams, peers []string) *Follower {
	t.Helper()
	f, err := New(Config{
		DataDir: t.TempDir(), Genesis: genesisPath, Upstreams: upstreams, Peers: peers, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ShutdownGrace: time.Second, Health: hc, HealthEvery: 50 * time.Millisecond,
		Engine: actors.Config{PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		Log:    testnet.LogOnFailure(t, "follower of "+strings.Join(upstreams, ",")),
	})
	if err != nil {
		t.Fatal(err)
	}
	startFollower(t, f)
	return f
}

func grpcServing(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

func readyz(t *testing.T, f *Follower) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + f.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	sb.Write(buf[:n])
	return resp.StatusCode, sb.String()
}

// TestReadinessFollowsLag: not ready while starting, ready once caught up
// (gRPC health for both names and /readyz agree), and not ready, with lag
// unknown, once its only source goes silent.
func TestReadinessFollowsLag(t *testing.T) {
	p, stopPrimary := startStoppablePrimary(t, 100*time.Millisecond)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	if code, body := readyz(t, f); code != http.StatusServiceUnavailable {
		t.Fatalf("just started: /readyz %d %q, want 503", code, body)
	}
	waitFor(t, 30*time.Second, "ready", func() bool { return f.Health().Ready })
	for _, svc := range []string{"", ServiceName} {
		if s := grpcServing(t, f.Addr(), svc); s != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health %q = %s, want SERVING", svc, s)
		}
	}
	if code, body := readyz(t, f); code != http.StatusOK || !strings.HasPrefix(body, "ready: lag") {
		t.Fatalf("/readyz %d %q, want 200 ready", code, body)
	}
	stopPrimary()
	// Not ready may come first from lag alone on a loaded machine; wait for
	// the source to go stale.
	waitFor(t, 10*time.Second, "lag unknown once the upstream is gone", func() bool { v := f.Health(); return !v.LagKnown && !v.Ready })
	v := f.Health()
	if v.LagKnown || !strings.Contains(v.Reason, "lag unknown") {
		t.Fatalf("with every source stale: %+v, want lag unknown", v)
	}
	if code, body := readyz(t, f); code != http.StatusServiceUnavailable || !strings.Contains(body, "lag unknown") {
		t.Fatalf("/readyz %d %q, want 503 naming the unknown lag", code, body)
	}
	if s := grpcServing(t, f.Addr(), ""); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health = %s, want NOT_SERVING", s)
	}
}

// rogue serves the read API of an honest store, except that it claims a
// tip far ahead: with no block behind it, or with a forged one.
type rogue struct {
	storev1.UnimplementedStoreServer
	honest storev1.StoreClient
	forge  bool
}

const rogueTip = 1_000_000_000

func (r *rogue) GetBlockHeaderByNumber(ctx context.Context, req *storev1.BlockHeaderByNumberRequest) (*storev1.BlockHeaderResponse, error) {
	resp, err := r.honest.GetBlockHeaderByNumber(ctx, req)
	if err != nil {
		return nil, err
	}
	h, _ := block.DecodeHeader(resp.Header)
	h.Number = rogueTip
	return &storev1.BlockHeaderResponse{Header: h.Encode(), ChainTip: rogueTip}, nil
}

func (r *rogue) GetBlockByNumber(ctx context.Context, req *storev1.BlockByNumberRequest) (*storev1.MaybeBlock, error) {
	if req.BlockNum != rogueTip || !r.forge {
		return &storev1.MaybeBlock{}, nil
	}
	hr, err := r.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{})
	if err != nil {
		return nil, err
	}
	h, _ := block.DecodeHeader(hr.Header)
	b := &block.Block{Header: h}
	b.Signature[0] = 1 // not the producer's signature
	return &storev1.MaybeBlock{Block: b.Encode()}, nil
}

func serveRogue(t *testing.T, honestAddr string, forge bool) string {
	t.Helper()
	conn, err := grpc.NewClient(honestAddr, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	storev1.RegisterStoreServer(gs, &rogue{honest: storev1.NewStoreClient(conn), forge: forge})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// TestRogueTipIgnored: a peer claiming a tip far ahead, unsigned or badly
// signed, does not count: the chain tip stays the honest one, and the
// follower becomes ready.
func TestRogueTipIgnored(t *testing.T) {
	p := startPrimary(t, 20*time.Millisecond)
	unsigned, forged := serveRogue(t, p.PublicAddr(), false), serveRogue(t, p.PublicAddr(), true)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, []string{unsigned, forged})
	waitFor(t, 30*time.Second, "ready despite the rogue peers", func() bool { return f.Health().Ready })
	// Give the rogues many polls to do harm.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if v := f.Health(); v.ChainTip >= rogueTip || (v.From != "local" && v.From != p.PublicAddr()) {
			t.Fatalf("a rogue tip counted: %+v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGRPCHealthProbe: the probe Kubernetes users run reports SERVING and
// NOT_SERVING across the transitions (exit 0, then exit 4).
func TestGRPCHealthProbe(t *testing.T) {
	probe := buildProbe(t)
	p, stopPrimary := startStoppablePrimary(t, 100*time.Millisecond)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	run := func() int {
		cmd := exec.Command(probe, "-addr="+f.Addr(), "-connect-timeout=2s", "-rpc-timeout=2s")
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	waitFor(t, 30*time.Second, "the probe to say SERVING", func() bool { return run() == 0 })
	stopPrimary()
	waitFor(t, 10*time.Second, "the probe to say NOT_SERVING", func() bool { return run() == 4 })
}

// buildProbe builds grpc-health-probe at the version pinned in tools/go.mod.
func buildProbe(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	out := filepath.Join(t.TempDir(), "grpc-health-probe")
	cmd := exec.Command("go", "build", "-modfile="+filepath.Join(root, "tools", "go.mod"), "-o", out, "github.com/grpc-ecosystem/grpc-health-probe")
	cmd.Dir = filepath.Join(root, "tools")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build grpc-health-probe: %v\n%s", err, b)
	}
	return out
}

// TestClientSideHealthChecking: a grpc-go client balancing round robin with
// health checking sends reads only to the ready follower.
func TestClientSideHealthChecking(t *testing.T) {
	// Blocks slow enough that the ready follower stays within max-lag on a
	// loaded machine while the reads are made.
	p := startPrimary(t, 100*time.Millisecond)
	ready := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0") // an upstream that never answers
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	lagging := healthFollower(t, genesisOf(p), []string{deadAddr}, nil)
	waitFor(t, 30*time.Second, "one ready follower", func() bool { return ready.Health().Ready })
	if lagging.Health().Ready {
		t.Fatal("a follower with no live upstream is ready")
	}
	r := manual.NewBuilderWithScheme("followers")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: ready.Addr()}, {Addr: lagging.Addr()}}})
	conn, err := grpc.NewClient("followers:///reads", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(ClientServiceConfig))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := storev1.NewStoreClient(conn)
	served := map[string]int{}
	for range 40 {
		var pr peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.Status(ctx, &storev1.StatusRequest{}, grpc.Peer(&pr), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		served[pr.Addr.String()]++
	}
	if served[ready.Addr()] != 40 {
		t.Fatalf("reads went to %v; want all 40 on the ready follower %s", served, ready.Addr())
	}
}
