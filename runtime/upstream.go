package runtime

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
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

func dialUpstream(addr string) (*grpcUpstream, error) {
	conn, err := grpc.NewClient(addr, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
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
