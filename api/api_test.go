package api_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
	"storesync/block"
	"storesync/merkle"
	"storesync/state"
	"storesync/store"
	"storesync/workload"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture: a store holding a small chain with proofs up to block 6, served
// over real gRPC on loopback.
type fixture struct {
	chain  *workload.Chain
	st     *store.Store
	client storev1.StoreClient
	conn   *grpc.ClientConn
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	c, st := api.FixtureStore(t, 6)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(api.PublicServerOptions()...)
	api.RegisterPublic(gs, st)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fixture{chain: c, st: st, client: storev1.NewStoreClient(conn), conn: conn}
}

func TestReadEndpointsMatchTheStore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.chain
	sn := f.st.Snapshot()

	st, err := f.client.Status(ctx, &storev1.StatusRequest{})
	if err != nil || st.CommittedTip != 10 || st.ChainId != c.Genesis.ChainID || !bytes.Equal(st.GenesisCommitment, c.Genesis.Commitment[:]) {
		t.Fatalf("status: %v %+v", err, st)
	}

	for n := uint64(0); n <= 11; n++ {
		mb, err := f.client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n, IncludeProof: true})
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			if mb.Block != nil || mb.Proof != nil {
				t.Fatalf("block %d past the tip: want an empty MaybeBlock", n)
			}
			continue
		}
		want, _ := sn.BlockBytes(n)
		if !bytes.Equal(mb.Block, want) {
			t.Fatalf("block %d bytes differ from the store", n)
		}
		if proven := n >= 1 && n <= 6; proven != (mb.Proof != nil) {
			t.Fatalf("block %d: proof present=%v, want %v", n, mb.Proof != nil, proven)
		}
		if mb.Proof != nil {
			if err := c.Genesis.Verifier().VerifyProof(n, c.States[n].Commitment, mb.Proof); err != nil {
				t.Fatal(err)
			}
		}
		noProof, _ := f.client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n})
		if noProof.Proof != nil {
			t.Fatalf("block %d: proof sent without include_proof", n)
		}
	}

	latest, err := f.client.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{IncludeMmrProof: true})
	if err != nil || latest.ChainTip != 10 || latest.MmrProof != nil {
		t.Fatalf("latest header: %v %+v", err, latest)
	}
	tip, err := block.DecodeHeader(latest.Header)
	if err != nil || tip != c.Blocks[9].Header {
		t.Fatalf("latest header differs: %v", err)
	}
	for n := uint64(0); n < 10; n++ {
		hr, err := f.client.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{BlockNum: &n, IncludeMmrProof: true})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := block.DecodeHeader(hr.Header)
		p, err := merkle.DecodeMMRProof(hr.MmrProof)
		if err != nil || !merkle.VerifyMMR(tip.ChainCommitment, hr.ChainTip, n, h.Commitment(), p) {
			t.Fatalf("header %d: MMR proof does not verify against the tip's chain commitment (%v)", n, err)
		}
	}

	for _, u := range c.Blocks[9].Body.Accounts[:3] {
		ar, err := f.client.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: u.ID[:]})
		if err != nil {
			t.Fatal(err)
		}
		p, err := merkle.DecodeSMTProof(ar.Proof)
		if err != nil || !ar.Found || !bytes.Equal(ar.StateCommitment, u.Commitment[:]) ||
			!merkle.VerifySMT(tip.AccountRoot, u.ID, u.Commitment, p) || !bytes.Equal(ar.AccountRoot, tip.AccountRoot[:]) {
			t.Fatalf("account %s: %v %+v", u.ID.Short(), err, ar)
		}
	}

	spent := c.Blocks[4].Body.Nullifiers[0]
	unspent := merkle.Sum([]byte("unspent"))
	nr, err := f.client.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: [][]byte{spent[:], unspent[:]}})
	if err != nil || len(nr.Nullifiers) != 2 || nr.Nullifiers[0].SpentAt != 5 || nr.Nullifiers[1].SpentAt != 0 {
		t.Fatalf("nullifiers: %v %+v", err, nr)
	}
	for i, nf := range []merkle.Hash{spent, unspent} {
		p, err := merkle.DecodeSMTProof(nr.Nullifiers[i].Proof)
		v := merkle.Hash{}
		if i == 0 {
			v = state.NullifierValue(5)
		}
		if err != nil || !merkle.VerifySMT(tip.NullifierRoot, nf, v, p) {
			t.Fatalf("nullifier %d: proof does not verify (%v)", i, err)
		}
	}

	ids := c.Blocks[2].NoteIDs()
	gr, err := f.client.GetNotesById(ctx, &storev1.GetNotesByIdRequest{NoteIds: [][]byte{ids[1][:], unspent[:]}})
	if err != nil || len(gr.Notes) != 1 || !bytes.Equal(gr.Notes[0].NoteId, ids[1][:]) || gr.Notes[0].BlockNum != 3 || gr.Notes[0].Index != 1 ||
		!bytes.Equal(gr.Notes[0].Details, c.Blocks[2].Body.Notes[1].Details) {
		t.Fatalf("notes by id: %v %+v", err, gr)
	}

	tags := []uint32{c.Blocks[0].Body.Notes[0].Tag, c.Blocks[5].Body.Notes[0].Tag}
	want, _, err := sn.NotesByTags(ctx, tags, store.Position{Block: 1}, 1000)
	if err != nil || len(want) < 2 {
		t.Fatalf("store notes by tags: %v, %d", err, len(want))
	}
	var got []*storev1.Note
	req := &storev1.SyncNotesRequest{Tags: tags, FromBlock: 1, PageSize: 1}
	for pages := 0; ; pages++ {
		resp, err := f.client.SyncNotes(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Notes...)
		if resp.NextPageToken == "" {
			break
		}
		if pages > 1000 {
			t.Fatal("pages do not end")
		}
		req.PageToken = resp.NextPageToken
	}
	if len(got) != len(want) {
		t.Fatalf("sync notes: %d notes over pages, store has %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].NoteId, want[i].ID[:]) {
			t.Fatalf("sync notes: note %d differs", i)
		}
	}
}

// TestBadInput: each malformed or unanswerable request gets a precise status
// and the server keeps serving.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	short := []byte{1, 2, 3}
	many := make([][]byte, api.MaxIDs+1)
	for i := range many {
		many[i] = make([]byte, 32)
	}
	unknown := merkle.Sum([]byte("nobody"))
	var past uint64 = 99
	token := func() string {
		tags := []uint32{f.chain.Blocks[0].Body.Notes[0].Tag}
		r, err := f.client.SyncNotes(ctx, &storev1.SyncNotesRequest{Tags: tags, PageSize: 1})
		if err != nil || r.NextPageToken == "" {
			t.Fatalf("no token to reuse: %v", err)
		}
		return r.NextPageToken
	}()
	huge := make([][]byte, 1)
	huge[0] = make([]byte, api.MaxRequestBytes+1)
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"account id too short", func() error {
			_, err := f.client.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: short})
			return err
		}, codes.InvalidArgument, "account_id: want 32 bytes, got 3"},
		{"unknown account", func() error {
			_, err := f.client.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: unknown[:]})
			return err
		}, codes.NotFound, "does not exist"},
		{"no nullifiers", func() error {
			_, err := f.client.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{})
			return err
		}, codes.InvalidArgument, "nullifiers: want 1 to 1024 entries, got 0"},
		{"too many nullifiers", func() error {
			_, err := f.client.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: many})
			return err
		}, codes.InvalidArgument, "got 1025"},
		{"malformed nullifier", func() error {
			_, err := f.client.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: [][]byte{unknown[:], short}})
			return err
		}, codes.InvalidArgument, "nullifiers[1]: want 32 bytes"},
		{"too many note ids", func() error {
			_, err := f.client.GetNotesById(ctx, &storev1.GetNotesByIdRequest{NoteIds: many})
			return err
		}, codes.InvalidArgument, "note_ids: want 1 to 1024"},
		{"oversized request", func() error {
			_, err := f.client.GetNotesById(ctx, &storev1.GetNotesByIdRequest{NoteIds: huge})
			return err
		}, codes.ResourceExhausted, "larger than max"},
		{"header past the tip", func() error {
			_, err := f.client.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{BlockNum: &past})
			return err
		}, codes.NotFound, "past the committed tip"},
		{"no tags", func() error {
			_, err := f.client.SyncNotes(ctx, &storev1.SyncNotesRequest{})
			return err
		}, codes.InvalidArgument, "tags: want 1 to 256 tags, got 0"},
		{"page too large", func() error {
			_, err := f.client.SyncNotes(ctx, &storev1.SyncNotesRequest{Tags: []uint32{1}, PageSize: 5000})
			return err
		}, codes.InvalidArgument, "page_size: 5000"},
		{"page token from nowhere", func() error {
			_, err := f.client.SyncNotes(ctx, &storev1.SyncNotesRequest{Tags: []uint32{1}, PageToken: "bm90IGEgdG9rZW4"})
			return err
		}, codes.InvalidArgument, "not a page token"},
		{"page token of another query", func() error {
			_, err := f.client.SyncNotes(ctx, &storev1.SyncNotesRequest{Tags: []uint32{1, 2}, PageToken: token})
			return err
		}, codes.InvalidArgument, "issued for other tags"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			s, _ := status.FromError(err)
			if s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
				t.Fatalf("got %v, want %s mentioning %q", err, tc.code, tc.msg)
			}
			if _, err := f.client.Status(ctx, &storev1.StatusRequest{}); err != nil {
				t.Fatalf("server stopped serving: %v", err)
			}
		})
	}
}

// TestNoWritePathOnPublicListener: the read API's server has no ApplyBlock.
func TestNoWritePathOnPublicListener(t *testing.T) {
	f := newFixture(t)
	_, err := storev1.NewInternalClient(f.conn).ApplyBlock(context.Background(), &storev1.ApplyBlockRequest{Block: f.chain.Blocks[0].Encode()})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("ApplyBlock on the public listener: got %v, want Unimplemented", err)
	}
}
