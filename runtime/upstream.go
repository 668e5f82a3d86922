package runtime

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"storesync/actors"
	"storesync/api"
	"storesync/api/storev1"
)

// grpcUpstream is an actors.Upstream over another store's read API.
type grpcUpstream struct {
	addr   string
	conn   *grpc.ClientConn
	client storev1.StoreClient
	last   connectivity.State // the state Reconnected last saw
}

// upstreamBackoff paces reconnection to an upstream. gRPC's default grows to
// two minutes, which would keep a follower behind long after a broken link
// is mended; the Fetcher's own backoff already paces the calls.
var upstreamBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// upstreamKeepalive notices an upstream connection gone silent without a
// reset (the upstream's host replaced at the same address, a NAT or balancer
// on the path that dropped it). gRPC keeps using such a connection: every
// call on it times out, for good behind a middlebox that still acknowledges
// (TCP itself gives up only after some 15 minutes of retransmissions), while
// a new connection would work. A ping goes out only while calls are in
// flight and nothing has been read for Time (10 s is gRPC's floor), so a
// working link never sends one and an upstream's default ping policy (at most
// one per 5 minutes, strikes reset by any data it sends) is never crossed;
// unanswered for Timeout, the connection is closed and gRPC dials anew.
var upstreamKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}

// Receive windows of an upstream connection: a block per stream, many
// blocks per connection.
const (
	upstreamStreamWindow = 16 << 20
	upstreamConnWindow   = 64 << 20
)

// dialUpstream connects to a store's read API with creds (from
// TLS.upstreamCredentials; nil: plain text); report, if not nil, adds the
// follower's report to every call.
func dialUpstream(addr string, creds credentials.TransportCredentials, tp trace.TracerProvider, report grpc.UnaryClientInterceptor) (*grpcUpstream, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := append(api.ClientOptions(), grpc.WithTransportCredentials(creds), grpc.WithConnectParams(upstreamBackoff),
		grpc.WithKeepaliveParams(upstreamKeepalive),
		// Flow-control windows sized for a full fetch window in flight over
		// a long round trip: gRPC's 64 KiB start (grown by BDP estimation)
		// caps a 50 ms link near 1 MB/s for the first seconds.
		grpc.WithInitialWindowSize(upstreamStreamWindow), grpc.WithInitialConnWindowSize(upstreamConnWindow))
	if tp != nil {
		// The call's client span, and the trace context sent to the
		// upstream so that its server span joins the block's trace.
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp))))
	}
	if report != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(report))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	return &grpcUpstream{addr: addr, conn: conn, client: storev1.NewStoreClient(conn)}, nil
}

// Name implements actors.Upstream.
func (u *grpcUpstream) Name() string { return u.addr }

// GetBlock implements actors.Upstream.
func (u *grpcUpstream) GetBlock(ctx context.Context, n uint64, includeProof bool) ([]byte, []byte, error) {
	a, err := u.GetBlockHeld(ctx, n, includeProof, actors.HoldAsk{})
	return a.Block, a.Proof, err
}

// GetBlockHeld implements actors.Holding.
func (u *grpcUpstream) GetBlockHeld(ctx context.Context, n uint64, includeProof bool, hold actors.HoldAsk) (actors.HeldAnswer, error) {
	if hold.Kind != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, api.HoldKey, hold.Kind, api.HoldWaitKey, strconv.FormatInt(max(hold.Wait.Milliseconds(), 1), 10))
		if hold.Grace > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, api.HoldGraceKey, strconv.FormatInt(max(hold.Grace.Milliseconds(), 1), 10))
		}
	}
	var header metadata.MD
	mb, err := u.client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n, IncludeProof: includeProof}, grpc.Header(&header))
	if err != nil {
		return actors.HeldAnswer{}, err
	}
	a := actors.HeldAnswer{Block: mb.Block, Proof: mb.Proof, Known: true}
	if v := header.Get(api.HoldMaxKey); len(v) > 0 {
		if ms, perr := strconv.ParseInt(v[0], 10, 64); perr == nil && ms > 0 {
			a.HoldMax = time.Duration(ms) * time.Millisecond
		}
	}
	if v := header.Get(api.ProvenKey); len(v) > 0 {
		a.Proven, _ = strconv.ParseUint(v[0], 10, 64)
	}
	if v := header.Get(api.ReleasedAtKey); len(v) > 0 {
		if us, perr := strconv.ParseInt(v[0], 10, 64); perr == nil && us > 0 {
			a.Released = time.UnixMicro(us)
		}
	}
	if a.Block == nil {
		a.Proof = nil
	}
	return a, nil
}

// Reconnected implements actors.Reconnecting. Only the Fetcher's watcher
// calls it, one call at a time, so last needs no lock.
func (u *grpcUpstream) Reconnected(ctx context.Context) bool {
	for {
		s := u.conn.GetState()
		if s == connectivity.Ready && u.last != connectivity.Ready {
			u.last = s
			return true
		}
		u.last = s
		if s == connectivity.Idle {
			// A lost connection leaves the channel idle until a call comes,
			// and the Fetcher, backed off, makes none: dial now. A dial
			// that fails goes through gRPC's reconnect backoff
			// (upstreamBackoff) before the channel is idle again, so this
			// never dials in a tight loop.
			u.conn.Connect()
		}
		if !u.conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}

func (u *grpcUpstream) close() error { return u.conn.Close() }
