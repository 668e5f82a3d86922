package merkle

import (
	"encoding/binary"
	"fmt"
)

// SMTProof proves that a key holds a value in an SMT, or that it is absent.
//
// The path follows the key's bits from the root down to a terminal node at
// depth len(Siblings): the key's own leaf (membership), another key's leaf
// (absence; HasOther), or an empty subtree (absence).
type SMTProof struct {
	Siblings []Hash // from the root downward; len = depth of the terminal node
	// The leaf that sits where key would be, for an absence proof ending at
	// another key's leaf.
	OtherKey, OtherValue Hash
	HasOther             bool
}

// maxSMTDepth is the deepest a terminal node can be: two keys that differ
// only in their last bit split at depth 255 into leaves at depth 256.
const maxSMTDepth = 8 * Size

// Prove returns a membership proof if key is in t, else an absence proof.
func (t *SMT) Prove(key Hash) SMTProof {
	p, _, _ := t.Lookup(key)
	return p
}

// Lookup returns key's proof, as Prove, with its value, as Get, from one
// walk down the tree.
func (t *SMT) Lookup(key Hash) (SMTProof, Hash, bool) {
	var sibs []Hash
	depth := 0
	n := t.root
	for {
		switch x := resolve(n).(type) {
		case *branch:
			if sibs == nil {
				// A random key's proof is about log2(keys) deep: one
				// allocation covers trees of up to 2^40 keys (appending
				// from nil took six).
				sibs = make([]Hash, 0, proofCap)
			}
			bit := int(x.bit)
			if bit > depth {
				if d := x.diverge(key); d < bit {
					// key leaves x's shared bits at bit d: below that its
					// side is empty and the sibling is x seen from d+1.
					sibs = appendZeros(sibs, d-depth)
					sibs = append(sibs, x.hashAt(d+1))
					return SMTProof{Siblings: sibs}, Hash{}, false
				}
				sibs = appendZeros(sibs, bit-depth)
			}
			side := bitOf(key, bit)
			sibs = append(sibs, x.hashes[1-side])
			n, depth = x.kids[side], bit+1
		case *leaf:
			if x.key == key {
				return SMTProof{Siblings: sibs}, x.value, true
			}
			return SMTProof{Siblings: sibs, OtherKey: x.key, OtherValue: x.value, HasOther: true}, Hash{}, false
		default:
			return SMTProof{Siblings: sibs}, Hash{}, false // empty tree
		}
	}
}

const proofCap = 40

func appendZeros(s []Hash, n int) []Hash {
	for range n {
		s = append(s, Hash{})
	}
	return s
}

// VerifySMT reports whether p proves that key holds value in the tree with
// the given root; a zero value asks whether p proves that key is absent.
func VerifySMT(root, key, value Hash, p SMTProof) bool {
	depth := len(p.Siblings)
	if depth > maxSMTDepth {
		return false
	}
	var h Hash // an absence proof ending in an empty subtree
	switch {
	case !value.IsZero():
		if p.HasOther {
			return false
		}
		h = LeafHash(key, value)
	case p.HasOther:
		// The other leaf must sit on key's path, and be some other key:
		// then it is alone in the subtree where key would be.
		if p.OtherKey == key || p.OtherValue.IsZero() || commonPrefix(p.OtherKey, key) < depth {
			return false
		}
		h = LeafHash(p.OtherKey, p.OtherValue)
	}
	for d := depth - 1; d >= 0; d-- {
		if bitOf(key, d) == 0 {
			h = Join(h, p.Siblings[d])
		} else {
			h = Join(p.Siblings[d], h)
		}
	}
	return h == root
}

// Encoding of an SMTProof, all integers little-endian:
//
//	flags     1 byte    bit 0: HasOther; other bits must be 0
//	count     2 bytes   len(Siblings), at most 256
//	present   (count+7)/8 bytes, bit i%8 of byte i/8 set if Siblings[i] is
//	          not zero; unused high bits must be 0
//	siblings  32 bytes for each non-zero sibling, in order
//	other     OtherKey then OtherValue, 64 bytes, only if HasOther
//
// Zero siblings are common (every level a path crosses without a split) so
// they cost one bit. The encoding is canonical: DecodeSMTProof accepts
// exactly the bytes Encode produces.
const (
	smtFlagHasOther = 1 << 0
	smtHeaderLen    = 3
)

// Encode returns the canonical encoding of p. Siblings beyond 256 make an
// encoding that DecodeSMTProof rejects, as VerifySMT would.
func (p SMTProof) Encode() []byte {
	n := len(p.Siblings)
	present := make([]byte, (n+7)/8)
	nonZero := 0
	for i, s := range p.Siblings {
		if !s.IsZero() {
			present[i/8] |= 1 << (i % 8)
			nonZero++
		}
	}
	out := make([]byte, 0, smtHeaderLen+len(present)+nonZero*Size+2*Size)
	var flags byte
	if p.HasOther {
		flags |= smtFlagHasOther
	}
	out = append(out, flags)
	out = binary.LittleEndian.AppendUint16(out, uint16(min(n, 0xffff)))
	out = append(out, present...)
	for _, s := range p.Siblings {
		if !s.IsZero() {
			out = append(out, s[:]...)
		}
	}
	if p.HasOther {
		out = append(out, p.OtherKey[:]...)
		out = append(out, p.OtherValue[:]...)
	}
	return out
}

// DecodeSMTProof parses an encoding made by Encode.
func DecodeSMTProof(b []byte) (SMTProof, error) {
	if len(b) < smtHeaderLen {
		return SMTProof{}, fmt.Errorf("decode smt proof: %d bytes, header needs %d: %w", len(b), smtHeaderLen, ErrMalformedProof)
	}
	var p SMTProof
	flags := b[0]
	if flags&^smtFlagHasOther != 0 {
		return SMTProof{}, fmt.Errorf("decode smt proof: unknown flags %#x: %w", flags, ErrMalformedProof)
	}
	p.HasOther = flags&smtFlagHasOther != 0
	n := int(binary.LittleEndian.Uint16(b[1:]))
	if n > maxSMTDepth {
		return SMTProof{}, fmt.Errorf("decode smt proof: %d siblings, at most %d: %w", n, maxSMTDepth, ErrMalformedProof)
	}
	b = b[smtHeaderLen:]
	presentLen := (n + 7) / 8
	if len(b) < presentLen {
		return SMTProof{}, fmt.Errorf("decode smt proof: sibling bitmap truncated: %w", ErrMalformedProof)
	}
	present := b[:presentLen]
	b = b[presentLen:]
	if n%8 != 0 && present[presentLen-1]>>(n%8) != 0 {
		return SMTProof{}, fmt.Errorf("decode smt proof: sibling bitmap has bits past sibling %d: %w", n, ErrMalformedProof)
	}
	if n > 0 {
		p.Siblings = make([]Hash, n)
	}
	for i := range p.Siblings {
		if present[i/8]>>(i%8)&1 == 0 {
			continue
		}
		if len(b) < Size {
			return SMTProof{}, fmt.Errorf("decode smt proof: sibling %d truncated: %w", i, ErrMalformedProof)
		}
		s := Hash(b[:Size])
		if s.IsZero() {
			return SMTProof{}, fmt.Errorf("decode smt proof: sibling %d is zero but marked present: %w", i, ErrMalformedProof)
		}
		p.Siblings[i] = s
		b = b[Size:]
	}
	if p.HasOther {
		if len(b) < 2*Size {
			return SMTProof{}, fmt.Errorf("decode smt proof: other leaf truncated: %w", ErrMalformedProof)
		}
		p.OtherKey, p.OtherValue = Hash(b[:Size]), Hash(b[Size:2*Size])
		b = b[2*Size:]
	}
	if len(b) != 0 {
		return SMTProof{}, fmt.Errorf("decode smt proof: %d trailing bytes: %w", len(b), ErrMalformedProof)
	}
	return p, nil
}
