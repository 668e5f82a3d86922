package reliability

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
	"storesync/block"
	"storesync/internal/testnet"
	"storesync/primary"
)

// evilServer speaks the public read API on loopback. Every answer is what
// an honest primary answers (it is a client of one), except that its
// misbehaviour may alter, stall or fail GetBlockByNumber, and failAll
// fails every call of every method.
type evilServer struct {
	storev1.UnimplementedStoreServer

	// immutable after construction
	honest   storev1.StoreClient
	producer ed25519.PrivateKey // the chain's real producer key, for well-signed lies
	stranger ed25519.PrivateKey // a key the genesis does not name
	lie      misbehaviour
	failAll  bool
	lis      net.Listener
	gs       *grpc.Server

	// accessed atomically or under mu
	bad   atomic.Int64 // answers that misbehaved
	calls atomic.Int64 // calls of any method
	mu    sync.Mutex
	at    map[uint64]bool // heights at which it misbehaved
}

// misbehaviour alters the honest answer to GetBlockByNumber(n). ok false:
// the honest answer goes out as it is.
type misbehaviour func(ctx context.Context, e *evilServer, n uint64, honest *storev1.MaybeBlock) (out *storev1.MaybeBlock, ok bool, err error)

// evilChosen are the heights at which a misbehaviour misbehaves: a third of
// them, so that the evil server also serves good blocks between its lies.
func evilChosen(n uint64) bool { return n%3 == 0 }

// startEvil serves the read API of p, altered by lie (nil: none), on a
// fresh loopback port until the test ends.
func startEvil(t *testing.T, p *testnet.Primary, lie misbehaviour, failAll bool) *evilServer {
	t.Helper()
	key, err := primary.ReadKey(filepath.Join(filepath.Dir(p.Store().Dir()), primary.ProducerFile))
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.PublicAddr(), append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	e := &evilServer{honest: storev1.NewStoreClient(conn), producer: key, stranger: stranger, lie: lie, failAll: failAll,
		lis: lis, at: map[uint64]bool{}}
	// It may send more than any honest store would: the over-size
	// misbehaviour needs to.
	e.gs = grpc.NewServer(grpc.MaxRecvMsgSize(api.MaxRequestBytes), grpc.MaxSendMsgSize(2*api.MaxResponseBytes),
		grpc.UnaryInterceptor(e.intercept))
	storev1.RegisterStoreServer(e.gs, e)
	go func() { _ = e.gs.Serve(lis) }()
	t.Cleanup(func() {
		e.gs.Stop() // cancels the stalled calls too
		conn.Close()
	})
	return e
}

// Addr is where it listens.
func (e *evilServer) Addr() string { return e.lis.Addr().String() }

// Heights at which it misbehaved, in order.
func (e *evilServer) Heights() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]uint64, 0, len(e.at))
	for n := range e.at {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// intercept fails every call when failAll, alternating two codes a client
// must take for a failing upstream, not a bad one.
func (e *evilServer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	k := e.calls.Add(1)
	if !e.failAll {
		return h(ctx, req)
	}
	e.bad.Add(1)
	if k%2 == 0 {
		return nil, status.Error(codes.Internal, "evil: internal error")
	}
	return nil, status.Error(codes.Unavailable, "evil: unavailable")
}

func (e *evilServer) GetBlockByNumber(ctx context.Context, req *storev1.BlockByNumberRequest) (*storev1.MaybeBlock, error) {
	mb, err := e.honest.GetBlockByNumber(ctx, req)
	if err != nil || e.lie == nil {
		return mb, err
	}
	out, ok, err := e.lie(ctx, e, req.GetBlockNum(), mb)
	if !ok {
		return mb, nil
	}
	e.bad.Add(1)
	e.mu.Lock()
	e.at[req.GetBlockNum()] = true
	e.mu.Unlock()
	return out, err
}

func (e *evilServer) Status(ctx context.Context, req *storev1.StatusRequest) (*storev1.StatusResponse, error) {
	return e.honest.Status(ctx, req)
}

func (e *evilServer) GetBlockHeaderByNumber(ctx context.Context, req *storev1.BlockHeaderByNumberRequest) (*storev1.BlockHeaderResponse, error) {
	return e.honest.GetBlockHeaderByNumber(ctx, req)
}

func (e *evilServer) GetAccount(ctx context.Context, req *storev1.GetAccountRequest) (*storev1.GetAccountResponse, error) {
	return e.honest.GetAccount(ctx, req)
}

func (e *evilServer) CheckNullifiers(ctx context.Context, req *storev1.CheckNullifiersRequest) (*storev1.CheckNullifiersResponse, error) {
	return e.honest.CheckNullifiers(ctx, req)
}

func (e *evilServer) GetNotesById(ctx context.Context, req *storev1.GetNotesByIdRequest) (*storev1.GetNotesByIdResponse, error) {
	return e.honest.GetNotesById(ctx, req)
}

func (e *evilServer) SyncNotes(ctx context.Context, req *storev1.SyncNotesRequest) (*storev1.SyncNotesResponse, error) {
	return e.honest.SyncNotes(ctx, req)
}

// evilReblock decodes an honest block, lets change alter it and encodes it.
func evilReblock(raw []byte, change func(*block.Block)) (*storev1.MaybeBlock, bool, error) {
	b, err := block.Decode(raw)
	if err != nil {
		return nil, false, fmt.Errorf("evil: decode the honest block: %w", err)
	}
	change(b)
	return &storev1.MaybeBlock{Block: b.Encode()}, true, nil
}

// The misbehaviours.

func lieBitFlipped(_ context.Context, _ *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	b := append([]byte(nil), mb.Block...)
	b[len(b)-ed25519.SignatureSize-1] ^= 0x10 // the last transaction header: the signed header still verifies
	return &storev1.MaybeBlock{Block: b, Proof: mb.Proof}, true, nil
}

func lieOtherHeight(ctx context.Context, e *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	other, err := e.honest.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n - 1})
	if err != nil {
		return nil, false, err
	}
	return &storev1.MaybeBlock{Block: other.Block}, true, nil
}

func lieStrangerSigned(_ context.Context, e *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	return evilReblock(mb.Block, func(b *block.Block) { b.Sign(e.stranger) })
}

// lieWrongRoots is a block the real producer signed whose account root is not
// the one its contents lead to: only the full state transition catches it.
func lieWrongRoots(_ context.Context, e *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	return evilReblock(mb.Block, func(b *block.Block) {
		b.Header.AccountRoot[0] ^= 1
		b.Sign(e.producer)
	})
}

func lieTruncated(_ context.Context, _ *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	return &storev1.MaybeBlock{Block: mb.Block[:len(mb.Block)/2]}, true, nil
}

// lieOverSize answers with one byte more than a client accepts.
func lieOverSize(_ context.Context, _ *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	return &storev1.MaybeBlock{Block: make([]byte, api.MaxResponseBytes+1)}, true, nil
}

func lieProofOfOtherBlock(ctx context.Context, e *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil || mb.Proof == nil || n < 2 {
		return nil, false, nil
	}
	prev, err := e.honest.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n - 1, IncludeProof: true})
	if err != nil || prev.Proof == nil {
		return nil, false, err
	}
	return &storev1.MaybeBlock{Block: mb.Block, Proof: prev.Proof}, true, nil
}

func lieProofFailing(_ context.Context, _ *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil || mb.Proof == nil {
		return nil, false, nil
	}
	p := append([]byte(nil), mb.Proof...)
	p[len(p)-1] ^= 1 // in the prover's signature
	return &storev1.MaybeBlock{Block: mb.Block, Proof: p}, true, nil
}

// liePastTip answers for blocks past the tip that Status and the latest header
// advertise with a forgery: the honest tip block renumbered to follow
// itself, signed by a key other than the producer's.
func liePastTip(ctx context.Context, e *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if mb.Block != nil {
		return nil, false, nil
	}
	h, err := e.honest.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{})
	if err != nil {
		return nil, false, err
	}
	tip, err := e.honest.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: h.ChainTip})
	if err != nil || tip.Block == nil {
		return nil, false, err
	}
	return evilReblock(tip.Block, func(b *block.Block) {
		b.Header.PrevCommitment = b.Header.Commitment()
		b.Header.Number = n
		b.Header.Timestamp++
		b.Sign(e.stranger)
	})
}

// lieStall answers nothing until the caller gives up.
func lieStall(ctx context.Context, _ *evilServer, n uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	if !evilChosen(n) || mb.Block == nil {
		return nil, false, nil
	}
	<-ctx.Done()
	return nil, true, status.FromContextError(ctx.Err()).Err()
}

// lieNot serves the honest answer but counts it, for a server whose
// misbehaviour is in the network in front of it.
func lieNot(_ context.Context, _ *evilServer, _ uint64, mb *storev1.MaybeBlock) (*storev1.MaybeBlock, bool, error) {
	return mb, mb.Block != nil, nil
}
