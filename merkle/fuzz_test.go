package merkle

import (
	"bytes"
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
