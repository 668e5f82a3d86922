package merkle

import (
	"fmt"
	"math/bits"
)

// MMRProof proves that a leaf is in an MMR of a given size.
type MMRProof struct {
	Siblings []Hash // from the leaf up to its mountain's peak
	Peaks    []Hash // every peak, left to right
}

// Prove returns the inclusion proof of leaf number leaf. Of a disk-backed
// MMR it reads the siblings that are in the store with one ReadMMRNodes
// call.
func (m *MMR) Prove(leaf uint64) (MMRProof, error) {
	if leaf >= m.leaves {
		return MMRProof{}, fmt.Errorf("prove MMR leaf %d of %d: %w", leaf, m.leaves, ErrLeafOutOfRange)
	}
	height, local, pos := mountainOf(m.leaves, leaf)
	peak := pos + subtreeSize(height) - 1
	var sibs []Hash // nil when empty, as DecodeMMRProof returns it
	if height > 0 {
		sibs = make([]Hash, height)
	}
	// The siblings to read, and where each goes in sibs.
	var stored []uint64
	var into [maxMMRHeight]int
	// Walk down from the peak; in post-order the right child sits just
	// before its parent and the left child one right subtree further back.
	for h := height; h > 0; h-- {
		left, right := peak-1-subtreeSize(h-1), peak-1
		sib := left
		if local>>(h-1)&1 == 0 {
			sib, peak = right, left
		} else {
			peak = right
		}
		if sib >= m.base {
			sibs[h-1] = m.memNode(sib)
			continue
		}
		if stored == nil {
			stored = make([]uint64, 0, h)
		}
		into[len(stored)] = h - 1
		stored = append(stored, sib)
	}
	if len(stored) > 0 {
		read := make([]Hash, len(stored))
		if err := m.src.ReadMMRNodes(stored, read); err != nil {
			return MMRProof{}, fmt.Errorf("prove MMR leaf %d: read %d siblings: %w", leaf, len(stored), err)
		}
		for i, h := range read {
			sibs[into[i]] = h
		}
	}
	return MMRProof{Siblings: sibs, Peaks: m.Peaks()}, nil
}

// VerifyMMR reports whether p proves that value is leaf number leaf of an
// MMR with the given number of leaves and root. The proof's shape is fixed
// by (leaves, leaf), so a proof of any other length is rejected.
func VerifyMMR(root Hash, leaves, leaf uint64, value Hash, p MMRProof) bool {
	if leaf >= leaves || len(p.Peaks) != bits.OnesCount64(leaves) {
		return false
	}
	height, local, _ := mountainOf(leaves, leaf)
	if len(p.Siblings) != height {
		return false
	}
	h := value
	for i, s := range p.Siblings {
		if local>>i&1 == 0 {
			h = Join(h, s)
		} else {
			h = Join(s, h)
		}
	}
	// The mountains are ordered largest first, so the index of leaf's
	// mountain is the number of larger mountains, the set bits above it.
	if p.Peaks[bits.OnesCount64(leaves>>(height+1))] != h {
		return false
	}
	return mmrRoot(leaves, p.Peaks) == root
}

// Encoding of an MMRProof:
//
//	count     1 byte, len(Siblings), at most 64
//	siblings  32 bytes each
//	count     1 byte, len(Peaks), at most 64
//	peaks     32 bytes each
//
// The verifier knows the leaf count, which fixes both lengths; they are
// still encoded so that a proof can be parsed on its own.

// Encode returns the encoding of p. More than 64 siblings or peaks make an
// encoding that DecodeMMRProof rejects, as VerifyMMR would.
func (p MMRProof) Encode() []byte {
	out := make([]byte, 0, 2+(len(p.Siblings)+len(p.Peaks))*Size)
	out = appendHashes(out, p.Siblings)
	return appendHashes(out, p.Peaks)
}

func appendHashes(out []byte, hs []Hash) []byte {
	out = append(out, byte(min(len(hs), 0xff)))
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out
}

// DecodeMMRProof parses an encoding made by Encode.
func DecodeMMRProof(b []byte) (MMRProof, error) {
	sibs, b, err := readHashes(b, "siblings")
	if err != nil {
		return MMRProof{}, fmt.Errorf("decode mmr proof: %w", err)
	}
	peaks, b, err := readHashes(b, "peaks")
	if err != nil {
		return MMRProof{}, fmt.Errorf("decode mmr proof: %w", err)
	}
	if len(b) != 0 {
		return MMRProof{}, fmt.Errorf("decode mmr proof: %d trailing bytes: %w", len(b), ErrMalformedProof)
	}
	return MMRProof{Siblings: sibs, Peaks: peaks}, nil
}

// readHashes reads a count byte and that many hashes, returning the rest.
func readHashes(b []byte, what string) ([]Hash, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%s count missing: %w", what, ErrMalformedProof)
	}
	n := int(b[0])
	b = b[1:]
	if n > maxMMRHeight {
		return nil, nil, fmt.Errorf("%d %s, at most %d: %w", n, what, maxMMRHeight, ErrMalformedProof)
	}
	if len(b) < n*Size {
		return nil, nil, fmt.Errorf("%s truncated: %d bytes for %d hashes: %w", what, len(b), n, ErrMalformedProof)
	}
	var hs []Hash
	if n > 0 {
		hs = make([]Hash, n)
		for i := range hs {
			hs[i] = Hash(b[i*Size:])
		}
	}
	return hs, b[n*Size:], nil
}
