package testnet

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
)

// Stalling is a store that answers slowly now and then: a real gRPC server
// on loopback serving the public read API by forwarding every call to an
// upstream store, except that one GetBlockByNumber call in every is held
// for a while first (until the stall ends, the client gives up or the
// server stops). The choice is deterministic: the calls are counted, and
// the k-th is held when k % every == 0. Everything it answers is the
// upstream's answer, unchanged: it is slow, never wrong.
type Stalling struct {
	storev1.UnimplementedStoreServer

	// immutable after construction
	every    int64
	stall    time.Duration
	holds    bool // forward the hold metadata and the answers' headers (NewStallingHolding)
	upstream storev1.StoreClient
	conn     *grpc.ClientConn
	lis      net.Listener
	gs       *grpc.Server
	stop     chan struct{} // closed by Close: the held calls give up
	served   chan struct{} // closed when Serve returns

	calls   atomic.Int64 // GetBlockByNumber calls received
	stalled atomic.Int64 // of which held
	holding atomic.Int64 // of which held now
	others  atomic.Int64 // calls of the other methods

	closeOnce sync.Once
}

// NewStalling serves upstream's read API on 127.0.0.1 (a fresh port),
// holding one GetBlockByNumber call in every (every >= 1) for stall before
// it is forwarded. Close stops it.
func NewStalling(upstream string, every int, stall time.Duration) (*Stalling, error) {
	if every < 1 {
		return nil, fmt.Errorf("stalling: every must be at least 1, got %d", every)
	}
	conn, err := grpc.NewClient(upstream, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, fmt.Errorf("stalling: dial %s: %w", upstream, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("stalling: listen: %w", err)
	}
	s := &Stalling{every: int64(every), stall: stall, upstream: storev1.NewStoreClient(conn), conn: conn, lis: lis,
		gs: grpc.NewServer(api.PublicServerOptions()...), stop: make(chan struct{}), served: make(chan struct{})}
	storev1.RegisterStoreServer(s.gs, s)
	go func() { defer close(s.served); _ = s.gs.Serve(lis) }()
	return s, nil
}

// NewStallingHolding is NewStalling for an upstream store that holds calls:
// the hold a call asks for goes on to the upstream, and the upstream's
// answer headers (its maximum hold, its proven tip) come back, so that the
// stalling store holds calls like any store of this build, and stalls some.
func NewStallingHolding(upstream string, every int, stall time.Duration) (*Stalling, error) {
	s, err := NewStalling(upstream, every, stall)
	if s != nil {
		s.holds = true
	}
	return s, err
}

// StartStalling is NewStalling for a test: it fails the test if the server
// cannot start, and stops it when the test ends.
func StartStalling(t testing.TB, upstream string, every int, stall time.Duration) *Stalling {
	t.Helper()
	s, err := NewStalling(upstream, every, stall)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is where it listens.
func (s *Stalling) Addr() string { return s.lis.Addr().String() }

// Calls is how many GetBlockByNumber calls it has received (the calls it
// counts to choose which to hold). thread-safe.
func (s *Stalling) Calls() int64 { return s.calls.Load() }

// Stalled is how many of them it held. thread-safe.
func (s *Stalling) Stalled() int64 { return s.stalled.Load() }

// Holding is how many calls it holds now. thread-safe.
func (s *Stalling) Holding() int64 { return s.holding.Load() }

// OtherCalls is how many calls of the other methods it forwarded. thread-safe.
func (s *Stalling) OtherCalls() int64 { return s.others.Load() }

// Close stops the server: held calls end at once (Unavailable), the others
// may finish for up to a second, then they are cut. Idempotent.
func (s *Stalling) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		done := make(chan struct{})
		go func() { s.gs.GracefulStop(); close(done) }()
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.gs.Stop()
			<-done
		}
		<-s.served
		s.conn.Close()
	})
}

// errStopped answers a held call when the server stops.
var errStopped = status.Error(codes.Unavailable, "stalling server stopping")

// hold waits out a stall: the timer, the client giving up, or Close.
func (s *Stalling) hold(ctx context.Context) error {
	s.holding.Add(1)
	defer s.holding.Add(-1)
	t := time.NewTimer(s.stall)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.stop:
		return errStopped
	}
}

func (s *Stalling) GetBlockByNumber(ctx context.Context, req *storev1.BlockByNumberRequest) (*storev1.MaybeBlock, error) {
	if s.calls.Add(1)%s.every == 0 {
		s.stalled.Add(1)
		if err := s.hold(ctx); err != nil {
			return nil, err
		}
	}
	if !s.holds {
		return s.upstream.GetBlockByNumber(ctx, req)
	}
	out := ctx
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, k := range []string{api.HoldKey, api.HoldWaitKey} {
			for _, v := range md.Get(k) {
				out = metadata.AppendToOutgoingContext(out, k, v)
			}
		}
	}
	var header metadata.MD
	mb, err := s.upstream.GetBlockByNumber(out, req, grpc.Header(&header))
	if len(header) > 0 {
		_ = grpc.SetHeader(ctx, filterMD(header, api.HoldMaxKey, api.ProvenKey))
	}
	return mb, err
}

// filterMD keeps the keys of md named.
func filterMD(md metadata.MD, keys ...string) metadata.MD {
	out := metadata.MD{}
	for _, k := range keys {
		if v := md.Get(k); len(v) > 0 {
			out.Set(k, v...)
		}
	}
	return out
}

func (s *Stalling) Status(ctx context.Context, req *storev1.StatusRequest) (*storev1.StatusResponse, error) {
	s.others.Add(1)
	return s.upstream.Status(ctx, req)
}

func (s *Stalling) GetBlockHeaderByNumber(ctx context.Context, req *storev1.BlockHeaderByNumberRequest) (*storev1.BlockHeaderResponse, error) {
	s.others.Add(1)
	return s.upstream.GetBlockHeaderByNumber(ctx, req)
}

func (s *Stalling) GetAccount(ctx context.Context, req *storev1.GetAccountRequest) (*storev1.GetAccountResponse, error) {
	s.others.Add(1)
	return s.upstream.GetAccount(ctx, req)
}

func (s *Stalling) CheckNullifiers(ctx context.Context, req *storev1.CheckNullifiersRequest) (*storev1.CheckNullifiersResponse, error) {
	s.others.Add(1)
	return s.upstream.CheckNullifiers(ctx, req)
}

func (s *Stalling) GetNotesById(ctx context.Context, req *storev1.GetNotesByIdRequest) (*storev1.GetNotesByIdResponse, error) {
	s.others.Add(1)
	return s.upstream.GetNotesById(ctx, req)
}

func (s *Stalling) SyncNotes(ctx context.Context, req *storev1.SyncNotesRequest) (*storev1.SyncNotesResponse, error) {
	s.others.Add(1)
	return s.upstream.SyncNotes(ctx, req)
}
