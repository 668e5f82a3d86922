package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"storesync/block"
	"storesync/merkle"
	"storesync/state"
	"storesync/workload"
)

func TestApplyReadAndReopen(t *testing.T) {
	c := testChain(t, "standard", 12)
	dir := t.TempDir()
	s := openStore(t, dir, c)
	if committed, proven := s.Tips(); committed != 0 || proven != 0 {
		t.Fatalf("fresh store tips = %d, %d; want 0, 0", committed, proven)
	}
	applyAll(t, s, c.Blocks)
	check := func(s *Store) {
		t.Helper()
		sn := s.Snapshot()
		if sn.Committed() != 12 {
			t.Fatalf("committed tip %d, want 12", sn.Committed())
		}
		if sn.State.Commitment != c.States[12].Commitment {
			t.Fatalf("tip commitment differs from the chain's")
		}
		for i, b := range c.Blocks {
			n := uint64(i + 1)
			data, err := sn.BlockBytes(n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, b.Encode()) {
				t.Fatalf("block %d bytes differ from what was applied", n)
			}
			h, err := sn.Header(context.Background(), n)
			if err != nil || h != b.Header {
				t.Fatalf("header %d: %v, equal=%v", n, err, h == b.Header)
			}
			if n == sn.Committed() {
				if _, err := sn.ChainProof(n); !errors.Is(err, ErrNotFound) {
					t.Fatalf("chain proof of the tip: got %v, want ErrNotFound", err)
				}
				continue
			}
			p, err := sn.ChainProof(n)
			if err != nil || !merkle.VerifyMMR(sn.State.Header.ChainCommitment, sn.Committed(), n, b.Header.Commitment(), p) {
				t.Fatalf("chain proof of block %d does not verify against the tip header (%v)", n, err)
			}
		}
		if _, err := sn.BlockBytes(13); !errors.Is(err, ErrNotFound) {
			t.Fatalf("block past the tip: got %v, want ErrNotFound", err)
		}
		last := c.Blocks[11]
		for _, u := range last.Body.Accounts[:5] {
			v, proof, ok, err := sn.Account(u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !ok || v != u.Commitment || !merkle.VerifySMT(last.Header.AccountRoot, u.ID, v, proof) {
				t.Fatalf("account %s: ok=%v, proof verifies=%v", u.ID.Short(), ok, merkle.VerifySMT(last.Header.AccountRoot, u.ID, v, proof))
			}
		}
		unknown := merkle.Sum([]byte("nobody"))
		if v, proof, ok, err := sn.Account(unknown); err != nil || ok || !merkle.VerifySMT(last.Header.AccountRoot, unknown, v, proof) {
			t.Fatalf("unknown account: ok=%v or absence proof does not verify", ok)
		}
		spent := c.Blocks[5].Body.Nullifiers[:3]
		fresh := merkle.Sum([]byte("unspent"))
		st, err := sn.Nullifiers(append(append([]merkle.Hash{}, spent...), fresh))
		if err != nil {
			t.Fatal(err)
		}
		for i, ns := range st {
			want := uint64(6)
			if i == 3 {
				want = 0
			}
			v := merkle.Hash{}
			if want != 0 {
				v = state.NullifierValue(want)
			}
			if ns.SpentAt != want || !merkle.VerifySMT(last.Header.NullifierRoot, ns.Nullifier, v, ns.Proof) {
				t.Fatalf("nullifier %d: spent at %d, want %d (or proof fails)", i, ns.SpentAt, want)
			}
		}
		ids := c.Blocks[3].NoteIDs()
		notes, err := sn.NotesByID(context.Background(), []merkle.Hash{ids[2], fresh, ids[0]})
		if err != nil || len(notes) != 2 || notes[0].ID != ids[2] || notes[1].ID != ids[0] || notes[0].Block != 4 || notes[0].Index != 2 {
			t.Fatalf("notes by id: %v %+v", err, notes)
		}
		if !bytes.Equal(notes[0].Note.Details, c.Blocks[3].Body.Notes[2].Details) {
			t.Fatalf("note details differ")
		}
		// Page through one tag's notes and compare with the chain.
		tag := c.Blocks[0].Body.Notes[0].Tag
		var want []merkle.Hash
		for _, b := range c.Blocks {
			for i, n := range b.Body.Notes {
				if n.Tag == tag {
					want = append(want, block.NoteID(b.Header.Number, uint32(i), &n))
				}
			}
		}
		got := pageNotesByTags(t, sn, []uint32{tag}, 1)
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("notes by tag %d: got %d, want %d", tag, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("notes by tag: note %d differs", i)
			}
		}
	}
	check(s)
	before := takeFingerprint(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, c)
	defer s.Close()
	check(s)
	sameFingerprint(t, before, takeFingerprint(t, s))
}

// TestNotesByTags pages through several tags at once with pages of every
// size and compares with the chain, with the tag index holding entries no
// answer may use: positions past the snapshot's tip, and positions whose
// row holds another tag (what a crash that took a block back leaves).
func TestNotesByTags(t *testing.T) {
	c := testChain(t, "standard", 8)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	applyAll(t, s, c.Blocks[:6])
	sn := s.Snapshot()
	applyAll(t, s, c.Blocks[6:]) // past sn's tip: in the index, not in sn
	tags := []uint32{c.Blocks[0].Body.Notes[0].Tag, c.Blocks[2].Body.Notes[1].Tag, c.Blocks[4].Body.Notes[2].Tag}

	// Stale entries: every note of block 3 indexed under tags[0] as well.
	sb := s.state.newBatch()
	for i := range c.Blocks[2].Body.Notes {
		if err := sb.b.Set(tagKey(tags[0], notePos(3, uint32(i))), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := sb.b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}

	for _, asked := range [][]uint32{tags[:1], tags, {tags[1], tags[1], 999999}} {
		var want []merkle.Hash
		for _, b := range c.Blocks[:6] {
			for i, n := range b.Body.Notes {
				if slices.Contains(asked, n.Tag) {
					want = append(want, block.NoteID(b.Header.Number, uint32(i), &n))
				}
			}
		}
		for _, size := range []int{1, 2, 5, 1000} {
			got := pageNotesByTags(t, sn, asked, size)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("tags %v, pages of %d: got %d notes, want %d (or in another order)", asked, size, len(got), len(want))
			}
		}
	}
}

// pageNotesByTags pages through the notes of tags from the start, size a
// page, and returns their IDs; every page but the last is full.
func pageNotesByTags(t *testing.T, sn *Snapshot, tags []uint32, size int) []merkle.Hash {
	t.Helper()
	var got []merkle.Hash
	from := Position{}
	for pages := 0; ; pages++ {
		page, next, err := sn.NotesByTags(context.Background(), tags, from, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > size || (next != nil && len(page) != size) {
			t.Fatalf("tags %v, size %d: page of %d, next %v", tags, size, len(page), next)
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		if next == nil {
			return got
		}
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		from = *next
	}
}

// TestSameBlocksSameState: two stores fed the same blocks agree at every
// height, and agree with the chain the blocks were built on.
func TestSameBlocksSameState(t *testing.T) {
	c := testChain(t, "small", 40)
	a := openStore(t, t.TempDir(), c)
	defer a.Close()
	b := openStore(t, t.TempDir(), c)
	defer b.Close()
	for i, blk := range c.Blocks {
		applyAll(t, a, []*block.Block{blk})
		applyAll(t, b, []*block.Block{blk})
		sa, sb, want := a.Snapshot().State, b.Snapshot().State, c.States[i+1]
		for _, pair := range [][3]merkle.Hash{
			{sa.Commitment, sb.Commitment, want.Commitment},
			{sa.Accounts.Root(), sb.Accounts.Root(), want.Header.AccountRoot},
			{sa.Nullifiers.Root(), sb.Nullifiers.Root(), want.Header.NullifierRoot},
			{sa.Chain.Root(), sb.Chain.Root(), want.Chain.Root()},
		} {
			if pair[0] != pair[1] || pair[1] != pair[2] {
				t.Fatalf("height %d: stores disagree: %s %s want %s", i+1, pair[0].Short(), pair[1].Short(), pair[2].Short())
			}
		}
	}
}

// TestRejections: every validation failure returns its typed error naming
// the block and the check, and leaves all three media exactly as they were.
func TestRejections(t *testing.T) {
	c := testChain(t, "small", 8)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	applyAll(t, s, c.Blocks[:5])
	next := c.Blocks[5] // block 6
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	resign := func(b *block.Block) { b.Sign(c.Keys.Producer) }
	spentEarlier := c.Blocks[3].Body.Nullifiers[0]

	cases := []struct {
		name   string
		mutate func(b *block.Block) // on a deep copy of block 6
		bytes  func() []byte        // instead of a block, raw bytes
		check  state.Check
		sent   error
	}{
		{name: "truncated", bytes: func() []byte { d := next.Encode(); return d[:len(d)-10] }, check: state.CheckDecode, sent: state.ErrDecode},
		{name: "bit flip in a length", bytes: func() []byte { d := next.Encode(); d[1+244+3] ^= 0x40; return d }, check: state.CheckDecode, sent: state.ErrDecode},
		{name: "version", mutate: func(b *block.Block) { b.Header.Version = 2; resign(b) }, check: state.CheckVersion, sent: state.ErrVersion},
		{name: "number ahead", mutate: func(b *block.Block) { b.Header.Number = 7; resign(b) }, check: state.CheckNumber, sent: state.ErrNumber},
		{name: "number replayed", mutate: func(b *block.Block) { *b = *copyBlock(c.Blocks[4]) }, check: state.CheckNumber, sent: state.ErrNumber},
		{name: "previous commitment", mutate: func(b *block.Block) { b.Header.PrevCommitment[0] ^= 1; resign(b) }, check: state.CheckPrevCommitment, sent: state.ErrPrevCommitment},
		{name: "timestamp", mutate: func(b *block.Block) { b.Header.Timestamp = 1; resign(b) }, check: state.CheckTimestamp, sent: state.ErrTimestamp},
		{name: "signature bit flip", mutate: func(b *block.Block) { b.Signature[10] ^= 1 }, check: state.CheckSignature, sent: state.ErrSignature},
		{name: "signed by another key", mutate: func(b *block.Block) { b.Sign(other) }, check: state.CheckSignature, sent: state.ErrSignature},
		{name: "header changed after signing", mutate: func(b *block.Block) { b.Header.Timestamp++ }, check: state.CheckSignature, sent: state.ErrSignature},
		{name: "transaction commitment", mutate: func(b *block.Block) { b.Body.Transactions[0].FinalState[0] ^= 1; resign(b) }, check: state.CheckTxCommitment, sent: state.ErrTxCommitment},
		{name: "note root", mutate: func(b *block.Block) { b.Body.Notes[0].Details[0] ^= 1; resign(b) }, check: state.CheckNoteRoot, sent: state.ErrNoteRoot},
		{name: "accounts out of order", mutate: func(b *block.Block) {
			a := b.Body.Accounts
			a[0], a[1] = a[1], a[0]
			resign(b)
		}, check: state.CheckBody, sent: state.ErrBody},
		{name: "zero account commitment", mutate: func(b *block.Block) { b.Body.Accounts[0].Commitment = merkle.Hash{}; resign(b) }, check: state.CheckBody, sent: state.ErrBody},
		{name: "double spend across blocks", mutate: func(b *block.Block) {
			b.Body.Nullifiers = sortedWith(b.Body.Nullifiers, spentEarlier)
			resign(b)
		}, check: state.CheckDoubleSpend, sent: state.ErrDoubleSpend},
		{name: "double spend within the block", mutate: func(b *block.Block) {
			b.Body.Nullifiers = sortedWith(b.Body.Nullifiers, b.Body.Nullifiers[0])
			resign(b)
		}, check: state.CheckDoubleSpend, sent: state.ErrDoubleSpend},
		{name: "account root", mutate: func(b *block.Block) { b.Body.Accounts[0].Commitment[0] ^= 1; resign(b) }, check: state.CheckAccountRoot, sent: state.ErrAccountRoot},
		{name: "nullifier root", mutate: func(b *block.Block) {
			b.Body.Nullifiers = sortedWith(b.Body.Nullifiers, merkle.Sum([]byte("fresh")))
			resign(b)
		}, check: state.CheckNullifierRoot, sent: state.ErrNullifierRoot},
		{name: "chain commitment", mutate: func(b *block.Block) { b.Header.ChainCommitment[0] ^= 1; resign(b) }, check: state.CheckChainCommitment, sent: state.ErrChainCommitment},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := takeFingerprint(t, s)
			var err error
			if tc.bytes != nil {
				_, err = s.ApplyBlockBytes(context.Background(), tc.bytes())
			} else {
				b := copyBlock(next)
				tc.mutate(b)
				_, err = s.ApplyBlock(context.Background(), b)
			}
			r := state.Rejection(err)
			if r == nil {
				t.Fatalf("got %v, want a rejection", err)
			}
			if r.Check != tc.check || r.Number != 6 || !errors.Is(err, tc.sent) || !errors.Is(err, state.ErrRejected) {
				t.Fatalf("got %v (check %q, block %d), want check %q on block 6", err, r.Check, r.Number, tc.check)
			}
			sameFingerprint(t, before, takeFingerprint(t, s))
		})
	}
	// The untouched block still applies: nothing above poisoned the store.
	applyAll(t, s, c.Blocks[5:])
	if s.Snapshot().State.Commitment != c.States[8].Commitment {
		t.Fatal("store diverged after rejections")
	}
}

func copyBlock(b *block.Block) *block.Block {
	c, err := block.Decode(b.Encode())
	if err != nil {
		panic(err)
	}
	return c
}

func sortedWith(hs []merkle.Hash, extra merkle.Hash) []merkle.Hash {
	out := append(append([]merkle.Hash{}, hs...), extra)
	for i := len(out) - 1; i > 0 && bytes.Compare(out[i-1][:], out[i][:]) > 0; i-- {
		out[i-1], out[i] = out[i], out[i-1]
	}
	return out
}

func TestApplyProof(t *testing.T) {
	c := testChain(t, "small", 8)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	applyAll(t, s, c.Blocks[:4])
	ctx := context.Background()
	prove := func(n int) []byte {
		return block.Prove(c.Keys.Prover, uint64(n), c.States[n].Commitment).Encode()
	}
	wrongKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	cases := []struct {
		name string
		n    uint64
		data []byte
		want error
	}{
		{"out of order", 2, prove(2), ErrProofOrder},
		{"genesis", 0, prove(0), ErrProofOrder},
		{"garbage", 1, []byte("not a proof"), block.ErrProof},
		{"for another block", 1, prove(2), block.ErrProof},
		{"wrong commitment", 1, block.Prove(c.Keys.Prover, 1, c.States[2].Commitment).Encode(), block.ErrProof},
		{"wrong prover key", 1, block.Prove(wrongKey, 1, c.States[1].Commitment).Encode(), block.ErrProof},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := takeFingerprint(t, s)
			if err := s.ApplyProof(ctx, tc.n, tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			sameFingerprint(t, before, takeFingerprint(t, s))
		})
	}
	for n := 1; n <= 4; n++ {
		if err := s.ApplyProof(ctx, uint64(n), prove(n)); err != nil {
			t.Fatalf("proof %d: %v", n, err)
		}
	}
	before := takeFingerprint(t, s)
	if err := s.ApplyProof(ctx, 5, prove(4)); !errors.Is(err, ErrProofAhead) {
		t.Fatalf("proof past the committed tip: got %v", err)
	}
	sameFingerprint(t, before, takeFingerprint(t, s))
	if _, proven := s.Tips(); proven != 4 {
		t.Fatalf("proven tip %d, want 4", proven)
	}
	for n := 1; n <= 4; n++ {
		got, err := s.Snapshot().ProofBytes(uint64(n))
		if err != nil || !bytes.Equal(got, prove(n)) {
			t.Fatalf("proof %d read back: %v", n, err)
		}
	}
	if _, err := s.Snapshot().ProofBytes(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unproven block: got %v, want ErrNotFound", err)
	}
}

func TestOpenRefusesOtherChain(t *testing.T) {
	c := testChain(t, "small", 8)
	dir := t.TempDir()
	openStore(t, dir, c).Close()
	p, _ := workload.ProfileByName("small")
	other, err := workload.BuildChain(99, p, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, other.Genesis); !errors.Is(err, ErrGenesis) {
		t.Fatalf("open with another genesis: got %v, want ErrGenesis", err)
	}
}

// TestApplyProofsBatch: a batch is applied whole or not at all.
func TestApplyProofsBatch(t *testing.T) {
	c := testChain(t, "small", 8)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	applyAll(t, s, c.Blocks[:6])
	ctx := context.Background()
	prove := func(n int) []byte { return block.Prove(c.Keys.Prover, uint64(n), c.States[n].Commitment).Encode() }
	before := takeFingerprint(t, s)
	bad := [][]byte{prove(1), prove(2), prove(4), prove(4)}
	if err := s.ApplyProofs(ctx, 1, bad); !errors.Is(err, block.ErrProof) || !strings.Contains(err.Error(), "apply proof 3") {
		t.Fatalf("batch with a bad third proof: got %v", err)
	}
	sameFingerprint(t, before, takeFingerprint(t, s))
	if err := s.ApplyProofs(ctx, 1, [][]byte{prove(1), prove(2), prove(3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyProofs(ctx, 4, [][]byte{prove(4), prove(5), prove(6), prove(6)}); !errors.Is(err, ErrProofAhead) {
		t.Fatalf("batch past the committed tip: got %v", err)
	}
	if err := s.ApplyProofs(ctx, 4, [][]byte{prove(4), prove(5)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, s.Dir(), c)
	defer s.Close()
	for n := 1; n <= 5; n++ {
		got, err := s.Snapshot().ProofBytes(uint64(n))
		if err != nil || !bytes.Equal(got, prove(n)) {
			t.Fatalf("proof %d after reopen: %v", n, err)
		}
	}
}

// TestPublishTimes: a snapshot says when its tips were published and when
// the ApplyBlock that made its committed tip began; a proof publishes a
// new proven time and keeps the committed tip's times.
func TestPublishTimes(t *testing.T) {
	c := testChain(t, "small", 3)
	s := openStore(t, t.TempDir(), c)
	defer s.Close()
	if sn := s.Snapshot(); !sn.ApplyStart.IsZero() || !sn.CommittedAt.IsZero() {
		t.Fatalf("at Open: apply start %v, committed at %v, want both zero", sn.ApplyStart, sn.CommittedAt)
	}
	before := time.Now()
	applyAll(t, s, c.Blocks[:1])
	after := time.Now()
	sn := s.Snapshot()
	if sn.ApplyStart.Before(before) || sn.ApplyStart.After(sn.CommittedAt) || sn.CommittedAt.After(after) {
		t.Fatalf("call at %v..%v: apply start %v, committed at %v", before, after, sn.ApplyStart, sn.CommittedAt)
	}
	if err := s.ApplyProof(context.Background(), 1, block.Prove(c.Keys.Prover, 1, c.States[1].Commitment).Encode()); err != nil {
		t.Fatal(err)
	}
	pn := s.Snapshot()
	if !pn.ApplyStart.Equal(sn.ApplyStart) || !pn.CommittedAt.Equal(sn.CommittedAt) || pn.ProvenAt.Before(sn.CommittedAt) {
		t.Fatalf("after the proof: apply start %v (was %v), committed at %v (was %v), proven at %v",
			pn.ApplyStart, sn.ApplyStart, pn.CommittedAt, sn.CommittedAt, pn.ProvenAt)
	}
}
