package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"storesync/api/storev1"
	"storesync/block"
	"storesync/merkle"
	"storesync/state"
	"storesync/store"
)

// Version is reported by Status.
const Version = "0.1.0"

// Request limits. They bound the work and memory of one call.
const (
	// MaxIDs bounds the ids of one CheckNullifiers or GetNotesById call.
	MaxIDs = 1024
	// MaxTags bounds the tags of one SyncNotes call.
	MaxTags = 256
	// DefaultPageSize and MaxPageSize bound the notes of one SyncNotes page.
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// MaxRequestBytes bounds a public request: MaxIDs ids of 32 bytes with
	// their framing fit in well under this.
	MaxRequestBytes = 256 << 10
	// MaxResponseBytes must carry the largest block with its proof.
	MaxResponseBytes = block.MaxBlockBytes + 64<<10
	// MaxInternalRequestBytes must carry the largest block.
	MaxInternalRequestBytes = block.MaxBlockBytes + 64<<10
)

// PublicServerOptions are the options of a server that exposes Store (the
// primary's; a follower's adds its client limits). Pings are allowed every
// 5 s: a follower pings an upstream that has gone quiet in the middle of its
// calls (every 10 s at most), and gRPC's default (one per 5 minutes) would
// answer that with GOAWAY.
func PublicServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxRequestBytes), grpc.MaxSendMsgSize(MaxResponseBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second})}
}

// InternalServerOptions are the options of the primary's internal server.
func InternalServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxInternalRequestBytes)}
}

// ClientOptions let a client receive the largest block.
func ClientOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseBytes), grpc.MaxCallSendMsgSize(MaxInternalRequestBytes))}
}

// StopGracefully lets in-flight calls finish for up to grace, then cuts
// them.
func StopGracefully(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	t := time.NewTimer(max(grace, time.Millisecond))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}

// RegisterPublic registers the read API and server reflection on gs.
func RegisterPublic(gs *grpc.Server, st *store.Store) {
	storev1.RegisterStoreServer(gs, &Server{st: st})
	reflection.Register(gs)
}

// RegisterInternal registers the write path on gs, which must not be the
// public server.
func RegisterInternal(gs *grpc.Server, st *store.Store) {
	storev1.RegisterInternalServer(gs, &InternalServer{st: st})
	reflection.Register(gs)
}

// Server implements the read API over a store.
type Server struct {
	storev1.UnimplementedStoreServer
	st *store.Store
}

// Status implements storev1.StoreServer.
func (s *Server) Status(ctx context.Context, _ *storev1.StatusRequest) (*storev1.StatusResponse, error) {
	sn := s.st.Snapshot()
	g := s.st.Genesis()
	return &storev1.StatusResponse{Version: Version, CommittedTip: sn.Committed(), ChainId: g.ChainID, GenesisCommitment: g.Commitment[:]}, nil
}

// GetBlockByNumber implements storev1.StoreServer. Past the committed tip
// the answer is an empty MaybeBlock, not an error: a follower polling for
// the next block is not failing.
func (s *Server) GetBlockByNumber(ctx context.Context, req *storev1.BlockByNumberRequest) (*storev1.MaybeBlock, error) {
	sn := s.st.Snapshot()
	n := req.GetBlockNum()
	if n > sn.Committed() {
		return &storev1.MaybeBlock{}, nil
	}
	data, err := sn.BlockBytes(n)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	out := &storev1.MaybeBlock{Block: data}
	if req.GetIncludeProof() && n >= 1 && n <= sn.Proven {
		p, err := sn.ProofBytes(n)
		if err != nil {
			return nil, storeError(ctx, err)
		}
		out.Proof = p
	}
	return out, nil
}

// GetBlockHeaderByNumber implements storev1.StoreServer.
func (s *Server) GetBlockHeaderByNumber(ctx context.Context, req *storev1.BlockHeaderByNumberRequest) (*storev1.BlockHeaderResponse, error) {
	sn := s.st.Snapshot()
	n := sn.Committed()
	if req.BlockNum != nil {
		n = req.GetBlockNum()
	}
	if n > sn.Committed() {
		return nil, status.Errorf(codes.NotFound, "block %d is past the committed tip %d", n, sn.Committed())
	}
	h, err := sn.Header(ctx, n)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	out := &storev1.BlockHeaderResponse{Header: h.Encode(), ChainTip: sn.Committed()}
	if req.GetIncludeMmrProof() && n < sn.Committed() {
		p, err := sn.ChainProof(n)
		if err != nil {
			return nil, storeError(ctx, err)
		}
		out.MmrProof = p.Encode()
	}
	return out, nil
}

// GetAccount implements storev1.StoreServer.
func (s *Server) GetAccount(ctx context.Context, req *storev1.GetAccountRequest) (*storev1.GetAccountResponse, error) {
	id, err := hash32("account_id", req.GetAccountId())
	if err != nil {
		return nil, err
	}
	sn := s.st.Snapshot()
	v, proof, ok, err := sn.Account(id)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "account %s does not exist at block %d", id, sn.Committed())
	}
	root := sn.State.Header.AccountRoot
	return &storev1.GetAccountResponse{BlockNum: sn.Committed(), AccountRoot: root[:], Found: true, StateCommitment: v[:], Proof: proof.Encode()}, nil
}

// CheckNullifiers implements storev1.StoreServer.
func (s *Server) CheckNullifiers(ctx context.Context, req *storev1.CheckNullifiersRequest) (*storev1.CheckNullifiersResponse, error) {
	nfs, err := hashList("nullifiers", req.GetNullifiers())
	if err != nil {
		return nil, err
	}
	sn := s.st.Snapshot()
	root := sn.State.Header.NullifierRoot
	out := &storev1.CheckNullifiersResponse{BlockNum: sn.Committed(), NullifierRoot: root[:]}
	sts, err := sn.Nullifiers(nfs)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	for _, st := range sts {
		out.Nullifiers = append(out.Nullifiers, &storev1.NullifierStatus{Nullifier: st.Nullifier[:], SpentAt: st.SpentAt, Proof: st.Proof.Encode()})
	}
	return out, nil
}

// GetNotesById implements storev1.StoreServer.
func (s *Server) GetNotesById(ctx context.Context, req *storev1.GetNotesByIdRequest) (*storev1.GetNotesByIdResponse, error) {
	ids, err := hashList("note_ids", req.GetNoteIds())
	if err != nil {
		return nil, err
	}
	notes, err := s.st.Snapshot().NotesByID(ctx, ids)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	return &storev1.GetNotesByIdResponse{Notes: notesOut(notes)}, nil
}

// SyncNotes implements storev1.StoreServer.
func (s *Server) SyncNotes(ctx context.Context, req *storev1.SyncNotesRequest) (*storev1.SyncNotesResponse, error) {
	tags := req.GetTags()
	if len(tags) == 0 || len(tags) > MaxTags {
		return nil, status.Errorf(codes.InvalidArgument, "tags: want 1 to %d tags, got %d", MaxTags, len(tags))
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	if size > MaxPageSize {
		return nil, status.Errorf(codes.InvalidArgument, "page_size: %d is over the limit of %d", size, MaxPageSize)
	}
	from := store.Position{Block: req.GetFromBlock()}
	if t := req.GetPageToken(); t != "" {
		p, err := parsePageToken(t, tags)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "page_token: %v", err)
		}
		from = p
	}
	sn := s.st.Snapshot()
	if from.Block > sn.Committed() {
		// No notes there yet. Answered here, not by the store, because its
		// query binds positions as int64: a from_block or token past 2^63
		// would fail there as an Internal error.
		return &storev1.SyncNotesResponse{ChainTip: sn.Committed()}, nil
	}
	notes, next, err := sn.NotesByTags(ctx, tags, from, size)
	if err != nil {
		return nil, storeError(ctx, err)
	}
	out := &storev1.SyncNotesResponse{Notes: notesOut(notes), ChainTip: sn.Committed()}
	if next != nil {
		out.NextPageToken = pageToken(*next, tags)
	}
	return out, nil
}

func notesOut(notes []store.NoteRecord) []*storev1.Note {
	out := make([]*storev1.Note, len(notes))
	for i, n := range notes {
		out[i] = &storev1.Note{NoteId: n.ID[:], BlockNum: n.Block, Index: n.Index, Sender: n.Note.Sender[:], Tag: n.Note.Tag, Details: n.Note.Details}
	}
	return out
}

func hash32(field string, b []byte) (merkle.Hash, error) {
	var h merkle.Hash
	if len(b) != merkle.Size {
		return h, status.Errorf(codes.InvalidArgument, "%s: want %d bytes, got %d", field, merkle.Size, len(b))
	}
	copy(h[:], b)
	return h, nil
}

func hashList(field string, bs [][]byte) ([]merkle.Hash, error) {
	if len(bs) == 0 || len(bs) > MaxIDs {
		return nil, status.Errorf(codes.InvalidArgument, "%s: want 1 to %d entries, got %d", field, MaxIDs, len(bs))
	}
	out := make([]merkle.Hash, len(bs))
	for i, b := range bs {
		h, err := hash32(fmt.Sprintf("%s[%d]", field, i), b)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// storeError maps a store error to a gRPC status.
func storeError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrSnapshotGone):
		return status.Error(codes.Aborted, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// InternalServer implements the primary's write path.
type InternalServer struct {
	storev1.UnimplementedInternalServer
	st *store.Store
}

// ApplyBlock implements storev1.InternalServer.
func (s *InternalServer) ApplyBlock(ctx context.Context, req *storev1.ApplyBlockRequest) (*storev1.ApplyBlockResponse, error) {
	if _, err := s.st.ApplyBlockBytes(ctx, req.GetBlock()); err != nil {
		if r := state.Rejection(err); r != nil {
			return nil, status.Error(codes.InvalidArgument, r.Error())
		}
		return nil, storeError(ctx, err)
	}
	c, _ := s.st.Tips()
	return &storev1.ApplyBlockResponse{CommittedTip: c}, nil
}
