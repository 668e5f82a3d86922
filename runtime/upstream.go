package runtime

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"storesync/api"
	"storesync/api/storev1"
)

// grpcUpstream is an actors.Upstream over another store's read API.
type grpcUpstream struct {
	addr   string
	conn   *grpc.ClientConn
	client storev1.StoreClient
}

// upstreamBackoff paces reconnection to an upstream. gRPC's default grows to
// two minutes, which would keep a follower behind long after a broken link
// is mended; the Fetcher's own backoff already paces the calls.
var upstreamBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Receive windows of an upstream connection: a block per stream, many
// blocks per connection.
const (
	upstreamStreamWindow = 16 << 20
	upstreamConnWindow   = 64 << 20
)

func dialUpstream(addr string, tp trace.TracerProvider) (*grpcUpstream, error) {
	opts := append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithConnectParams(upstreamBackoff),
		// Flow-control windows sized for a full fetch window in flight over
		// a long round trip: gRPC's 64 KiB start (grown by BDP estimation)
		// caps a 50 ms link near 1 MB/s for the first seconds.
		grpc.WithInitialWindowSize(upstreamStreamWindow), grpc.WithInitialConnWindowSize(upstreamConnWindow))
	if tp != nil {
		// The call's client span, and the trace context sent to the
		// upstream so that its server span joins the block's trace.
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp))))
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
	mb, err := u.client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n, IncludeProof: includeProof})
	if err != nil {
		return nil, nil, err
	}
	if mb.Block == nil {
		return nil, nil, nil
	}
	return mb.Block, mb.Proof, nil
}

func (u *grpcUpstream) close() error { return u.conn.Close() }
