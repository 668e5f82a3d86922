package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"storesync/api/storev1"
	"storesync/block"
	"storesync/merkle"
	"storesync/state"
	"storesync/store"
	"storesync/workload"
)

// The fuzz targets call the handlers of a Server over a real store holding a
// small chain, built once per fuzz process and only read. Every answer is
// checked against the chain in memory, which the test knows independently of
// the store: what a request may get is fixed by the chain and the limits.

const (
	fuzzBlocks = FixtureBlocks // committed tip
	fuzzProven = 6             // proven tip
)

// fuzzNote is a note as the chain holds it, in chain order.
type fuzzNote struct {
	pos store.Position
	id  merkle.Hash
	tag uint32
}

type fuzzFixture struct {
	srv    *Server
	chain  *workload.Chain
	blocks []*block.Block // by number, block 0 the genesis block
	tip    block.Header

	notes     []fuzzNote // every note, in position order
	noteByID  map[merkle.Hash]fuzzNote
	tags      []uint32 // tags that have notes, sorted
	spent     map[merkle.Hash]uint64
	nulls     []merkle.Hash // spent nullifiers, in chain order
	accounts  []merkle.Hash // accounts at the tip, in chain order
	accountAt map[merkle.Hash]merkle.Hash
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	c, st := FixtureStore(f, fuzzProven)
	fx := &fuzzFixture{srv: &Server{st: st}, chain: c, tip: c.Blocks[fuzzBlocks-1].Header,
		noteByID: map[merkle.Hash]fuzzNote{}, spent: map[merkle.Hash]uint64{}, accountAt: map[merkle.Hash]merkle.Hash{}}
	fx.blocks = append([]*block.Block{c.Genesis.Block()}, c.Blocks...)
	for n, b := range fx.blocks {
		for i, id := range b.NoteIDs() {
			nt := fuzzNote{pos: store.Position{Block: uint64(n), Index: uint32(i)}, id: id, tag: b.Body.Notes[i].Tag}
			fx.notes = append(fx.notes, nt)
			fx.noteByID[id] = nt
			if !slices.Contains(fx.tags, nt.tag) {
				fx.tags = append(fx.tags, nt.tag)
			}
		}
		for _, nf := range b.Body.Nullifiers {
			fx.spent[nf] = uint64(n)
			fx.nulls = append(fx.nulls, nf)
		}
		for _, u := range b.Body.Accounts {
			if _, seen := fx.accountAt[u.ID]; !seen {
				fx.accounts = append(fx.accounts, u.ID)
			}
			fx.accountAt[u.ID] = u.Commitment
		}
	}
	slices.Sort(fx.tags)
	if smallest := 32 + 4 + 4; block.MaxBlockBytes/smallest >= fuzzMaxNotes {
		f.Fatalf("a block can hold more notes than a page token can index")
	}
	if len(fx.notes) == 0 || len(fx.nulls) == 0 || len(fx.accounts) == 0 {
		f.Fatalf("fuzz chain too thin: %d notes, %d nullifiers, %d accounts", len(fx.notes), len(fx.nulls), len(fx.accounts))
	}
	return fx
}

// checkStatus fails unless err is a status the read API documents for a
// request it refuses: InvalidArgument for a malformed request, NotFound for
// something that does not exist. Anything else (Internal, Unknown, a bare
// error) means the request reached somewhere it should not have.
func checkStatus(t *testing.T, call string, err error) codes.Code {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want a refusal", call)
	}
	s, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: error is not a gRPC status: %v", call, err)
	}
	if c := s.Code(); c != codes.InvalidArgument && c != codes.NotFound {
		t.Fatalf("%s: undocumented code %s: %v", call, c, err)
	}
	if s.Message() == "" {
		t.Fatalf("%s: %s with an empty message", call, s.Code())
	}
	return s.Code()
}

// checkSize fails if a response could not be sent by the public server.
func checkSize(t *testing.T, call string, m proto.Message) {
	t.Helper()
	if n := proto.Size(m); n > MaxResponseBytes {
		t.Fatalf("%s: response of %d bytes is over MaxResponseBytes %d", call, n, MaxResponseBytes)
	}
}

// FuzzBlockReads: blocks and headers by any number, with and without
// proofs, and Status. Up to the tip the answer is exactly the chain's; past
// it an empty MaybeBlock and a NotFound header.
func FuzzBlockReads(f *testing.F) {
	fx := newFuzzFixture(f)
	// Seeds in testdata/fuzz/FuzzBlockReads: genesis, proven, tip, past the
	// tip, the latest header, the largest number.
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, n uint64, includeProof, setNumber, includeMMR bool) {
		st, err := fx.srv.Status(ctx, &storev1.StatusRequest{})
		if err != nil || st.CommittedTip != fuzzBlocks || st.Version == "" || st.ChainId != fx.chain.Genesis.ChainID ||
			!bytes.Equal(st.GenesisCommitment, fx.chain.Genesis.Commitment[:]) {
			t.Fatalf("status: %v %+v", err, st)
		}

		mb, err := fx.srv.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n, IncludeProof: includeProof})
		if err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
		checkSize(t, "GetBlockByNumber", mb)
		if n > fuzzBlocks {
			if mb.Block != nil || mb.Proof != nil {
				t.Fatalf("block %d past the tip: want an empty MaybeBlock", n)
			}
		} else {
			if !bytes.Equal(mb.Block, fx.blocks[n].Encode()) {
				t.Fatalf("block %d differs from the chain", n)
			}
			if want := includeProof && n >= 1 && n <= fuzzProven; want != (mb.Proof != nil) {
				t.Fatalf("block %d: proof present=%v, want %v", n, mb.Proof != nil, want)
			}
			if mb.Proof != nil {
				if err := fx.chain.Genesis.Verifier().VerifyProof(n, fx.chain.States[n].Commitment, mb.Proof); err != nil {
					t.Fatalf("block %d: proof: %v", n, err)
				}
			}
		}

		req := &storev1.BlockHeaderByNumberRequest{IncludeMmrProof: includeMMR}
		want := uint64(fuzzBlocks)
		if setNumber {
			req.BlockNum, want = &n, n
		}
		hr, err := fx.srv.GetBlockHeaderByNumber(ctx, req)
		if want > fuzzBlocks {
			if checkStatus(t, "GetBlockHeaderByNumber", err) != codes.NotFound {
				t.Fatalf("header %d past the tip: %v, want NotFound", want, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("header %d: %v", want, err)
		}
		checkSize(t, "GetBlockHeaderByNumber", hr)
		h, err := block.DecodeHeader(hr.Header)
		if err != nil || h != fx.blocks[want].Header || hr.ChainTip != fuzzBlocks {
			t.Fatalf("header %d differs from the chain (%v), tip %d", want, err, hr.ChainTip)
		}
		if wantProof := includeMMR && want < fuzzBlocks; wantProof != (hr.MmrProof != nil) {
			t.Fatalf("header %d: MMR proof present=%v, want %v", want, hr.MmrProof != nil, wantProof)
		}
		if hr.MmrProof != nil {
			p, err := merkle.DecodeMMRProof(hr.MmrProof)
			if err != nil || !merkle.VerifyMMR(fx.tip.ChainCommitment, fuzzBlocks, want, h.Commitment(), p) {
				t.Fatalf("header %d: MMR proof does not verify (%v)", want, err)
			}
		}
	})
}

// idList makes count (mod 2*MaxIDs+2) entries of width bytes each, cut
// cyclically from raw, where pick[i] with its high bit set replaces entry i
// by a known id. It lets a few bytes of input make a list over the limit.
func idList(raw []byte, width uint8, count uint16, pick []byte, known []merkle.Hash) [][]byte {
	n := int(count) % (2*MaxIDs + 2)
	out := make([][]byte, n)
	off := 0
	for i := range out {
		if i < len(pick) && pick[i]&0x80 != 0 {
			id := known[int(pick[i]&0x7f)%len(known)]
			out[i] = id[:]
			continue
		}
		e := make([]byte, width)
		for j := range e {
			if len(raw) > 0 {
				e[j] = raw[off%len(raw)]
				off++
			}
		}
		out[i] = e
	}
	return out
}

// wellFormed says whether an id list must be accepted.
func wellFormed(ids [][]byte) bool {
	if len(ids) == 0 || len(ids) > MaxIDs {
		return false
	}
	for _, id := range ids {
		if len(id) != merkle.Size {
			return false
		}
	}
	return true
}

// FuzzIDReads: GetAccount, CheckNullifiers and GetNotesById with id lists of
// any length and width, mixing unknown and known ids. A list is accepted
// exactly when it is within the limits; an accepted one is answered as the
// chain says, with proofs that verify.
func FuzzIDReads(f *testing.F) {
	fx := newFuzzFixture(f)
	// Seeds in testdata/fuzz/FuzzIDReads: valid (known and unknown ids),
	// empty, a short id, at and over MaxIDs, huge.
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw []byte, width uint8, count uint16, pick []byte) {
		accounts := idList(raw, width, count, pick, fx.accounts)
		var account []byte
		if len(accounts) > 0 {
			account = accounts[0]
		}
		ar, err := fx.srv.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: account})
		var commitment merkle.Hash
		known := false
		if len(account) == merkle.Size {
			commitment, known = fx.accountAt[merkle.Hash(account)]
		}
		switch {
		case len(account) != merkle.Size:
			if checkStatus(t, "GetAccount", err) != codes.InvalidArgument {
				t.Fatalf("account id of %d bytes: %v, want InvalidArgument", len(account), err)
			}
		case !known:
			if checkStatus(t, "GetAccount", err) != codes.NotFound {
				t.Fatalf("unknown account: %v, want NotFound", err)
			}
		default:
			if err != nil {
				t.Fatalf("known account: %v", err)
			}
			checkSize(t, "GetAccount", ar)
			p, perr := merkle.DecodeSMTProof(ar.Proof)
			if !ar.Found || ar.BlockNum != fuzzBlocks || !bytes.Equal(ar.StateCommitment, commitment[:]) || !bytes.Equal(ar.AccountRoot, fx.tip.AccountRoot[:]) ||
				perr != nil || !merkle.VerifySMT(fx.tip.AccountRoot, merkle.Hash(account), commitment, p) {
				t.Fatalf("account answer differs from the chain (%v): %+v", perr, ar)
			}
		}

		nfs := idList(raw, width, count, pick, fx.nulls)
		nr, err := fx.srv.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: nfs})
		if !wellFormed(nfs) {
			if checkStatus(t, "CheckNullifiers", err) != codes.InvalidArgument {
				t.Fatalf("%d nullifiers: %v, want InvalidArgument", len(nfs), err)
			}
		} else {
			if err != nil {
				t.Fatalf("%d nullifiers: %v", len(nfs), err)
			}
			checkSize(t, "CheckNullifiers", nr)
			if len(nr.Nullifiers) != len(nfs) || nr.BlockNum != fuzzBlocks || !bytes.Equal(nr.NullifierRoot, fx.tip.NullifierRoot[:]) {
				t.Fatalf("%d nullifiers asked, %d answered at %d", len(nfs), len(nr.Nullifiers), nr.BlockNum)
			}
			for i, s := range nr.Nullifiers {
				nf := merkle.Hash(nfs[i])
				if !bytes.Equal(s.Nullifier, nfs[i]) || s.SpentAt != fx.spent[nf] {
					t.Fatalf("nullifier %d: answer %x spent at %d, chain says %d", i, s.Nullifier, s.SpentAt, fx.spent[nf])
				}
				if i < 4 { // proofs cost; the first few vouch for the mapping
					v := merkle.Hash{}
					if s.SpentAt != 0 {
						v = state.NullifierValue(s.SpentAt)
					}
					p, perr := merkle.DecodeSMTProof(s.Proof)
					if perr != nil || !merkle.VerifySMT(fx.tip.NullifierRoot, nf, v, p) {
						t.Fatalf("nullifier %d: proof does not verify (%v)", i, perr)
					}
				}
			}
		}

		noteIDs := make([]merkle.Hash, len(fx.notes))
		for i, n := range fx.notes {
			noteIDs[i] = n.id
		}
		ids := idList(raw, width, count, pick, noteIDs)
		gr, err := fx.srv.GetNotesById(ctx, &storev1.GetNotesByIdRequest{NoteIds: ids})
		if !wellFormed(ids) {
			if checkStatus(t, "GetNotesById", err) != codes.InvalidArgument {
				t.Fatalf("%d note ids: %v, want InvalidArgument", len(ids), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d note ids: %v", len(ids), err)
		}
		checkSize(t, "GetNotesById", gr)
		var want []fuzzNote
		seen := map[merkle.Hash]bool{}
		for _, id := range ids {
			if n, ok := fx.noteByID[merkle.Hash(id)]; ok && !seen[n.id] {
				want = append(want, n)
				seen[n.id] = true
			}
		}
		if len(gr.Notes) != len(want) {
			t.Fatalf("%d note ids: %d notes answered, chain has %d of them", len(ids), len(gr.Notes), len(want))
		}
		for i, n := range gr.Notes {
			checkNote(t, fx, n, want[i])
		}
	})
}

func checkNote(t *testing.T, fx *fuzzFixture, got *storev1.Note, want fuzzNote) {
	t.Helper()
	b := fx.blocks[want.pos.Block].Body.Notes[want.pos.Index]
	if !bytes.Equal(got.NoteId, want.id[:]) || got.BlockNum != want.pos.Block || got.Index != want.pos.Index ||
		got.Tag != want.tag || !bytes.Equal(got.Sender, b.Sender[:]) || !bytes.Equal(got.Details, b.Details) {
		t.Fatalf("note at %s differs from the chain: %+v", want.pos, got)
	}
}

// The page token format, written here from its description in token.go and
// not with its code: version 1 | block u64 | index u32 | first 8 bytes of
// the hash of the sorted tags (u32 each), little-endian, base64url.
func fuzzTagsHash(tags []uint32) []byte {
	s := slices.Sorted(slices.Values(tags))
	var buf []byte
	for _, t := range s {
		buf = binary.LittleEndian.AppendUint32(buf, t)
	}
	h := merkle.Sum(buf)
	return h[:8]
}

func fuzzToken(p store.Position, tags []uint32) string {
	b := []byte{1}
	b = binary.LittleEndian.AppendUint64(b, p.Block)
	b = binary.LittleEndian.AppendUint32(b, p.Index)
	return base64.RawURLEncoding.EncodeToString(append(b, fuzzTagsHash(tags)...))
}

func fuzzParseToken(s string, tags []uint32) (store.Position, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 21 || b[0] != 1 || !bytes.Equal(b[13:], fuzzTagsHash(tags)) {
		return store.Position{}, false
	}
	p := store.Position{Block: binary.LittleEndian.Uint64(b[1:]), Index: binary.LittleEndian.Uint32(b[9:])}
	return p, p.Index < fuzzMaxNotes
}

// fuzzMaxNotes bounds the notes of a block (MaxBlockBytes over the smallest
// note, 40 bytes, is under 2^20), so no issued token has an index at or past
// it.
const fuzzMaxNotes = 1 << 20

func before(a, b store.Position) bool {
	return a.Block < b.Block || a.Block == b.Block && a.Index < b.Index
}

// Token modes of FuzzSyncNotes.
const (
	tokenNone   = iota
	tokenRaw    // the fuzz bytes as the token: from nowhere
	tokenForged // well formed for these tags, at any position
	tokenOther  // well formed, for other tags
	tokenIssued // the one the previous page handed out
	tokenModes
)

// FuzzSyncNotes: tags (known ones picked by pick, arbitrary ones from raw,
// the list repeated up to count), from_block, page_size and page tokens of
// every kind. A request is accepted exactly when its tags and page size are
// within the limits and its token (if any) is well formed for its tags; an
// accepted one gets exactly the next notes of the chain with those tags
// from its position, at most a page of them, and a token for the rest.
func FuzzSyncNotes(f *testing.F) {
	fx := newFuzzFixture(f)
	// Seeds in testdata/fuzz/FuzzSyncNotes: valid, paging with issued
	// tokens, no tags, at and over the limits, tokens from nowhere, of other
	// tags, forged past a block's notes or the chain, from_block past 2^63.
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, pick, raw []byte, count uint16, fromBlock uint64, pageSize uint32, mode uint8, rawToken string, tokBlock uint64, tokIndex uint32) {
		var tags []uint32
		for _, p := range pick {
			tags = append(tags, fx.tags[int(p)%len(fx.tags)])
		}
		for i := 0; i+4 <= len(raw); i += 4 {
			tags = append(tags, binary.LittleEndian.Uint32(raw[i:]))
		}
		if n := int(count) % (2*MaxTags + 2); n > len(tags) && len(tags) > 0 {
			for i := len(tags); i < n; i++ {
				tags = append(tags, tags[i%len(tags)])
			}
		}
		req := &storev1.SyncNotesRequest{Tags: tags, FromBlock: fromBlock, PageSize: pageSize}
		from := store.Position{Block: fromBlock}
		tokenOK := true
		switch mode % tokenModes {
		case tokenRaw:
			req.PageToken = rawToken
			if req.PageToken != "" {
				from, tokenOK = fuzzParseToken(req.PageToken, tags)
			}
		case tokenForged:
			from = store.Position{Block: tokBlock, Index: tokIndex}
			req.PageToken, tokenOK = fuzzToken(from, tags), tokIndex < fuzzMaxNotes
		case tokenOther:
			req.PageToken, tokenOK = fuzzToken(store.Position{Block: tokBlock, Index: tokIndex}, append(slices.Clone(tags), tokIndex)), false
		}
		size := int(pageSize)
		if size == 0 {
			size = DefaultPageSize
		}
		valid := len(tags) >= 1 && len(tags) <= MaxTags && size <= MaxPageSize && tokenOK
		for page := 0; ; page++ {
			resp, err := fx.srv.SyncNotes(ctx, req)
			if !valid {
				if checkStatus(t, "SyncNotes", err) != codes.InvalidArgument {
					t.Fatalf("SyncNotes %d tags, page %d, token %q: %v, want InvalidArgument", len(tags), pageSize, req.PageToken, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SyncNotes %d tags from %s, page %d: %v", len(tags), from, size, err)
			}
			checkSize(t, "SyncNotes", resp)
			var want []fuzzNote
			for _, n := range fx.notes {
				if slices.Contains(tags, n.tag) && !before(n.pos, from) {
					want = append(want, n)
				}
			}
			rest := len(want) > size
			if rest {
				want = want[:size+1]
			}
			if resp.ChainTip != fuzzBlocks || len(resp.Notes) != min(len(want), size) {
				t.Fatalf("SyncNotes from %s, page %d: %d notes at tip %d, chain has %d", from, size, len(resp.Notes), resp.ChainTip, len(want))
			}
			for i, n := range resp.Notes {
				checkNote(t, fx, n, want[i])
			}
			if !rest {
				if resp.NextPageToken != "" {
					t.Fatalf("SyncNotes from %s: a next page token with nothing more", from)
				}
				return
			}
			next, ok := fuzzParseToken(resp.NextPageToken, tags)
			if !ok || next != want[size].pos {
				t.Fatalf("SyncNotes from %s: next token %q (%v) does not point at the next note %s", from, resp.NextPageToken, next, want[size].pos)
			}
			if mode%tokenModes != tokenIssued || page >= 3 {
				return
			}
			req.PageToken, from = resp.NextPageToken, next
		}
	})
}

// The requests of the read API, by a fuzz input's method number.
var fuzzRequests = []func() proto.Message{
	func() proto.Message { return &storev1.StatusRequest{} },
	func() proto.Message { return &storev1.BlockByNumberRequest{} },
	func() proto.Message { return &storev1.BlockHeaderByNumberRequest{} },
	func() proto.Message { return &storev1.GetAccountRequest{} },
	func() proto.Message { return &storev1.CheckNullifiersRequest{} },
	func() proto.Message { return &storev1.GetNotesByIdRequest{} },
	func() proto.Message { return &storev1.SyncNotesRequest{} },
}

func (s *Server) call(ctx context.Context, req proto.Message) (proto.Message, error) {
	switch r := req.(type) {
	case *storev1.StatusRequest:
		return s.Status(ctx, r)
	case *storev1.BlockByNumberRequest:
		return s.GetBlockByNumber(ctx, r)
	case *storev1.BlockHeaderByNumberRequest:
		return s.GetBlockHeaderByNumber(ctx, r)
	case *storev1.GetAccountRequest:
		return s.GetAccount(ctx, r)
	case *storev1.CheckNullifiersRequest:
		return s.CheckNullifiers(ctx, r)
	case *storev1.GetNotesByIdRequest:
		return s.GetNotesById(ctx, r)
	case *storev1.SyncNotesRequest:
		return s.SyncNotes(ctx, r)
	}
	panic("no handler for " + string(req.ProtoReflect().Descriptor().FullName()))
}

// FuzzRequestBytes: arbitrary bytes as the wire form of each request, as
// the server would unmarshal them, then the handler. Bytes that do not
// unmarshal, or are over MaxRequestBytes, never reach a handler (the
// transport refuses them). The answer is a documented status or a response
// within the limits.
func FuzzRequestBytes(f *testing.F) {
	fx := newFuzzFixture(f)
	seeds := []proto.Message{
		&storev1.StatusRequest{},
		&storev1.BlockByNumberRequest{BlockNum: 3, IncludeProof: true},
		&storev1.BlockHeaderByNumberRequest{BlockNum: proto.Uint64(2), IncludeMmrProof: true},
		&storev1.GetAccountRequest{AccountId: fx.accounts[0][:]},
		&storev1.CheckNullifiersRequest{Nullifiers: [][]byte{fx.nulls[0][:], make([]byte, 32)}},
		&storev1.GetNotesByIdRequest{NoteIds: [][]byte{fx.notes[0].id[:], {1, 2}}},
		&storev1.SyncNotesRequest{Tags: fx.tags[:3], FromBlock: 1, PageSize: 1},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
		f.Add(uint8(i), []byte{})
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		if len(data) > MaxRequestBytes {
			return
		}
		req := fuzzRequests[int(method)%len(fuzzRequests)]()
		if proto.Unmarshal(data, req) != nil {
			return
		}
		name := string(req.ProtoReflect().Descriptor().Name())
		resp, err := fx.srv.call(ctx, req)
		if err != nil {
			checkStatus(t, name, err)
			return
		}
		checkSize(t, name, resp)
		switch r := resp.(type) {
		case *storev1.CheckNullifiersResponse:
			if n := len(req.(*storev1.CheckNullifiersRequest).Nullifiers); len(r.Nullifiers) != n || n > MaxIDs {
				t.Fatalf("%s: %d answers to %d nullifiers", name, len(r.Nullifiers), n)
			}
		case *storev1.GetNotesByIdResponse:
			if n := len(req.(*storev1.GetNotesByIdRequest).NoteIds); len(r.Notes) > n || n > MaxIDs {
				t.Fatalf("%s: %d notes for %d ids", name, len(r.Notes), n)
			}
		case *storev1.SyncNotesResponse:
			if len(r.Notes) > MaxPageSize || len(req.(*storev1.SyncNotesRequest).Tags) > MaxTags {
				t.Fatalf("%s: %d notes for %d tags", name, len(r.Notes), len(req.(*storev1.SyncNotesRequest).Tags))
			}
		}
	})
}
