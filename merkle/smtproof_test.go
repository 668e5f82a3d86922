package merkle

import (
	"errors"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// checkProofs proves every key of pool (members and not) and checks that
// the proof verifies, survives encoding, and fails once tampered with.
func checkProofs(t *rapid.T, tr *SMT, pool []Hash) {
	root := tr.Root()
	for _, k := range pool {
		v, member := tr.Get(k)
		p := tr.Prove(k)
		if !VerifySMT(root, k, v, p) {
			t.Fatalf("proof of %s (member %v) does not verify", k.Short(), member)
		}
		q, err := DecodeSMTProof(p.Encode())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("proof round trip: %v, %+v != %+v", err, q, p)
		}
		if VerifySMT(root, k, Hash{0xee}, p) {
			t.Fatal("proof verifies a wrong value")
		}
		if member {
			if VerifySMT(root, k, Hash{}, p) {
				t.Fatal("membership proof verifies absence")
			}
			// The real leaf offered as "another key's leaf" must not pass.
			fake := SMTProof{Siblings: p.Siblings, OtherKey: k, OtherValue: v, HasOther: true}
			if VerifySMT(root, k, Hash{}, fake) {
				t.Fatal("own leaf accepted as proof of absence")
			}
			other := k
			other[31] ^= 1
			if _, in := tr.Get(other); !in && VerifySMT(root, other, v, p) {
				t.Fatal("membership proof verifies another key")
			}
		}
		// Top, middle and bottom: proofs of keys with long shared prefixes
		// have up to 256 siblings, too many to tamper with each.
		for _, i := range []int{0, len(p.Siblings) / 2, len(p.Siblings) - 1} {
			if len(p.Siblings) == 0 {
				break
			}
			bad := SMTProof{Siblings: append([]Hash(nil), p.Siblings...), OtherKey: p.OtherKey, OtherValue: p.OtherValue, HasOther: p.HasOther}
			bad.Siblings[i][i%Size] ^= 1
			if VerifySMT(root, k, v, bad) {
				t.Fatalf("proof with sibling %d tampered verifies", i)
			}
		}
		if len(p.Siblings) > 0 {
			short := p
			short.Siblings = p.Siblings[1:]
			if VerifySMT(root, k, v, short) {
				t.Fatal("proof missing its top sibling verifies")
			}
		}
		if p.HasOther {
			bad := p
			bad.OtherValue[0] ^= 1
			if VerifySMT(root, k, Hash{}, bad) {
				t.Fatal("absence proof with a wrong other leaf verifies")
			}
		}
	}
}

func TestSMTProofs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pool := genPool(t)
		tr := NewSMT()
		checkProofs(t, tr, pool)
		for range rapid.IntRange(1, 3).Draw(t, "batches") {
			tr = tr.Update(genBatch(pool, 40).Draw(t, "batch"))
			checkProofs(t, tr, pool)
			// Keys that were never in the pool, possibly near its keys.
			checkProofs(t, tr, rapid.SliceOfN(genKey(pool[0]), 1, 8).Draw(t, "fresh"))
		}
	})
}

func TestVerifySMTDepthBound(t *testing.T) {
	k, v := key(1, 2), val(3)
	at256 := SMTProof{Siblings: make([]Hash, maxSMTDepth)}
	root := chain(LeafHash(k, v), k, maxSMTDepth, 0)
	if !VerifySMT(root, k, v, at256) {
		t.Fatal("proof ending at depth 256 rejected")
	}
	// Bit 256 does not exist: a deeper proof must be rejected, not panic.
	deeper := SMTProof{Siblings: make([]Hash, maxSMTDepth+1)}
	for _, r := range []Hash{root, {}, Join(root, Hash{}), Join(Hash{}, root)} {
		if VerifySMT(r, k, v, deeper) || VerifySMT(r, k, Hash{}, deeper) {
			t.Fatal("proof deeper than 256 accepted")
		}
	}
	if _, err := DecodeSMTProof(deeper.Encode()); !errors.Is(err, ErrMalformedProof) {
		t.Fatalf("decoding 257 siblings: %v", err)
	}
}

func TestDecodeSMTProofErrors(t *testing.T) {
	valid := SMTProof{Siblings: []Hash{{1}, {}, {2}}, OtherKey: Hash{4}, OtherValue: Hash{5}, HasOther: true}.Encode()
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", []byte{0, 0}},
		{"unknown flag", []byte{2, 0, 0}},
		{"too many siblings", []byte{0, 1, 1}}, // 257
		{"bitmap missing", []byte{0, 3, 0}},
		{"bitmap padding set", append([]byte{0, 3, 0, 0x0f}, make([]byte, 3*Size)...)},
		{"sibling truncated", valid[:3+1+Size+5]},
		{"present sibling is zero", append([]byte{0, 1, 0, 1}, make([]byte, Size)...)},
		{"other leaf truncated", valid[:len(valid)-1]},
		{"trailing byte", append(append([]byte(nil), valid...), 0)},
		{"trailing bytes on empty proof", []byte{0, 0, 0, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSMTProof(tt.b); !errors.Is(err, ErrMalformedProof) {
				t.Fatalf("err = %v, want ErrMalformedProof", err)
			}
		})
	}
	if p, err := DecodeSMTProof(valid); err != nil || len(p.Siblings) != 3 || !p.HasOther {
		t.Fatalf("valid proof: %+v, %v", p, err)
	}
}

// TestDecodeSMTProofGarbage: any bytes decode to an error or to a proof
// whose encoding is exactly those bytes (the encoding is canonical).
func TestDecodeSMTProofGarbage(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.SliceOfN(rapid.Byte(), 0, 200).Draw(t, "b")
		if rapid.Bool().Draw(t, "plausible") && len(b) >= 3 {
			b[0] &= 1
			b[2] = 0 // a count below 256, so the rest gets parsed
		}
		p, err := DecodeSMTProof(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedProof) {
				t.Fatalf("error does not wrap ErrMalformedProof: %v", err)
			}
			return
		}
		if got := p.Encode(); string(got) != string(b) {
			t.Fatalf("decode then encode: %x, want %x", got, b)
		}
	})
}
