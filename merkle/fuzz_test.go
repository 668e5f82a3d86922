package merkle

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeSMTProof: any bytes either fail to decode or decode to a proof
// that encodes back to the same bytes; verification never panics.
func FuzzDecodeSMTProof(f *testing.F) {
	t := BuildSMT(randomKVs(1, 64))
	f.Add(t.Prove(hashOfInt(3)).Encode())
	f.Add(t.Prove(Sum([]byte("absent"))).Encode())
	f.Add([]byte{})
	f.Fuzz(func(tt *testing.T, data []byte) {
		p, err := DecodeSMTProof(data)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Encode(), data) {
			tt.Fatalf("proof encoding is not canonical")
		}
		VerifySMT(t.Root(), hashOfInt(3), Hash{1}, p)
	})
}

// FuzzDecodeMMRProof: the same for MMR proofs.
func FuzzDecodeMMRProof(f *testing.F) {
	m := &MMR{}
	for i := range 37 {
		m = m.Append(hashOfInt(i))
	}
	p, _ := m.Prove(5)
	f.Add(p.Encode())
	f.Add([]byte{0, 0})
	f.Fuzz(func(tt *testing.T, data []byte) {
		p, err := DecodeMMRProof(data)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Encode(), data) {
			tt.Fatalf("proof encoding is not canonical")
		}
		VerifyMMR(m.Root(), m.Leaves(), 5, hashOfInt(5), p)
	})
}

// FuzzDecodeNodeRecord: any bytes read back as a tree record either fail
// with ErrBadNode or decode to a record whose encoding decodes to the same
// encoding again; decoding never panics or recurses without bound.
func FuzzDecodeNodeRecord(f *testing.F) {
	store := newMapNodes()
	src := NewNodeSource(store, 0, 2)
	src.SetRecordLevels(4)
	if _, _, _, err := BuildSMT(randomKVs(2, 200)).Persist(src, store.alloc, store.put); err != nil {
		f.Fatal(err)
	}
	for _, rec := range store.recs {
		f.Add(rec)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBranch(data, nil)
		if err != nil {
			if !errors.Is(err, ErrBadNode) {
				t.Fatalf("decode failed with %v, not ErrBadNode", err)
			}
			return
		}
		enc := appendBranch(nil, b)
		again, err := decodeBranch(enc, nil)
		if err != nil {
			t.Fatalf("a decoded record encodes to bytes that do not decode: %v", err)
		}
		if !bytes.Equal(appendBranch(nil, again), enc) {
			t.Fatalf("a record's encoding changes when decoded and encoded again")
		}
	})
}
