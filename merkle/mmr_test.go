package merkle

import (
	"errors"
	"math/bits"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"
)

// refPeaks splits leaves into perfect trees by the bits of the count,
// largest first, and hashes each one recursively.
func refPeaks(leaves []Hash) []Hash {
	var peaks []Hash
	for len(leaves) > 0 {
		w := 1 << (bits.Len(uint(len(leaves))) - 1)
		peaks = append(peaks, refPerfect(leaves[:w]))
		leaves = leaves[w:]
	}
	return peaks
}

func refPerfect(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	return Join(refPerfect(leaves[:len(leaves)/2]), refPerfect(leaves[len(leaves)/2:]))
}

func refMMRRoot(leaves []Hash) Hash {
	peaks := refPeaks(leaves)
	if len(peaks) == 0 {
		return Hash{}
	}
	bag := peaks[len(peaks)-1]
	for i := len(peaks) - 2; i >= 0; i-- {
		bag = Join(peaks[i], bag)
	}
	return Join(countHash(uint64(len(leaves))), bag)
}

// TestMMRProofsEverySize checks, at every size up to 300, the root against
// the reference and every leaf's proof, right and wrong.
func TestMMRProofsEverySize(t *testing.T) {
	var leaves []Hash
	m := &MMR{}
	for size := 0; size <= 300; size++ {
		n := uint64(size)
		if m.Leaves() != n {
			t.Fatalf("Leaves = %d, want %d", m.Leaves(), n)
		}
		root := m.Root()
		if root != refMMRRoot(leaves) {
			t.Fatalf("size %d: root differs from reference", size)
		}
		if !slices.Equal(m.Peaks(), refPeaks(leaves)) {
			t.Fatalf("size %d: peaks differ from reference", size)
		}
		for i, leaf := range leaves {
			i := uint64(i)
			if m.Leaf(i) != leaf {
				t.Fatalf("size %d: Leaf(%d) wrong", size, i)
			}
			p, err := m.Prove(i)
			if err != nil || !VerifyMMR(root, n, i, leaf, p) {
				t.Fatalf("size %d: proof of leaf %d does not verify (%v)", size, i, err)
			}
			if VerifyMMR(root, n, i, Sum(leaf[:]), p) {
				t.Fatalf("size %d: proof of leaf %d verifies a wrong value", size, i)
			}
			if i+1 < n && VerifyMMR(root, n, i+1, leaf, p) {
				t.Fatalf("size %d: proof of leaf %d verifies at %d", size, i, i+1)
			}
			if VerifyMMR(root, n+1, i, leaf, p) || VerifyMMR(root, n-1, i, leaf, p) {
				t.Fatalf("size %d: proof of leaf %d verifies at another size", size, i)
			}
		}
		if _, err := m.Prove(n); !errors.Is(err, ErrLeafOutOfRange) {
			t.Fatalf("Prove(%d) of %d: err = %v", n, n, err)
		}
		leaf := hashOfInt(size)
		leaves = append(leaves, leaf)
		m = m.Append(leaf)
	}
}

func TestMMRTamperedProof(t *testing.T) {
	m := &MMR{}
	for i := range 23 { // peaks of 16, 4, 2 and 1 leaves
		m = m.Append(hashOfInt(i))
	}
	root := m.Root()
	p, err := m.Prove(17)
	if err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []struct {
		name string
		f    func(p *MMRProof)
	}{
		{"sibling flipped", func(p *MMRProof) { p.Siblings[0][0] ^= 1 }},
		{"sibling dropped", func(p *MMRProof) { p.Siblings = p.Siblings[1:] }},
		{"sibling added", func(p *MMRProof) { p.Siblings = append(p.Siblings, Hash{}) }},
		{"other peak flipped", func(p *MMRProof) { p.Peaks[3][0] ^= 1 }},
		{"peak dropped", func(p *MMRProof) { p.Peaks = p.Peaks[:3] }},
	} {
		t.Run(tamper.name, func(t *testing.T) {
			q := MMRProof{Siblings: slices.Clone(p.Siblings), Peaks: slices.Clone(p.Peaks)}
			tamper.f(&q)
			if VerifyMMR(root, 23, 17, hashOfInt(17), q) {
				t.Fatal("tampered proof verifies")
			}
		})
	}
}

// TestMMRHistory checks the sharing contract: older MMRs keep their
// contents as newer ones extend the same storage, and a dropped candidate
// does not disturb the one appended after it.
func TestMMRHistory(t *testing.T) {
	var zero MMR
	if !zero.Root().IsZero() || zero.Leaves() != 0 || len(zero.Peaks()) != 0 {
		t.Fatal("zero MMR is not empty")
	}
	var leaves []Hash
	m := &MMR{}
	var history []*MMR
	var roots []Hash
	// Enough leaves to cross chunk boundaries, where a dropped candidate
	// has already added the next chunk.
	const n = chunkLen + 100
	for i := range n {
		history, roots = append(history, m), append(roots, m.Root())
		_ = m.Append(Sum([]byte("dropped candidate")))
		leaves = append(leaves, hashOfInt(i))
		m = m.Append(leaves[i])
	}
	if m.Root() != refMMRRoot(leaves) {
		t.Fatal("root after dropped candidates differs from reference")
	}
	for i, old := range history {
		if old.Root() != roots[i] || old.Leaves() != uint64(i) {
			t.Fatalf("MMR of %d leaves changed", i)
		}
		if i%97 == 0 && old.Root() != refMMRRoot(leaves[:i]) {
			t.Fatalf("MMR of %d leaves differs from reference", i)
		}
	}
	for i, leaf := range leaves {
		if m.Leaf(uint64(i)) != leaf {
			t.Fatalf("leaf %d overwritten", i)
		}
	}
}

func TestMMRLeafOutOfRangePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Leaf past the end did not panic")
		}
	}()
	(&MMR{}).Append(Hash{1}).Leaf(1)
}

func TestMMRProofEncoding(t *testing.T) {
	m := &MMR{}
	for i := range 77 {
		m = m.Append(hashOfInt(i))
	}
	for i := range uint64(77) {
		p, _ := m.Prove(i)
		q, err := DecodeMMRProof(p.Encode())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("leaf %d: round trip %v", i, err)
		}
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"no peak count", []byte{0}},
		{"too many siblings", []byte{65}},
		{"too many peaks", []byte{0, 65}},
		{"siblings truncated", append([]byte{2}, make([]byte, Size+1)...)},
		{"peaks truncated", append([]byte{0, 1}, make([]byte, Size-1)...)},
		{"trailing byte", append(append([]byte{0, 1}, make([]byte, Size)...), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeMMRProof(tt.b); !errors.Is(err, ErrMalformedProof) {
				t.Fatalf("err = %v, want ErrMalformedProof", err)
			}
		})
	}
}

func TestDecodeMMRProofGarbage(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "b")
		if rapid.Bool().Draw(t, "plausible") && len(b) > 0 {
			b[0] %= 8
		}
		p, err := DecodeMMRProof(b)
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

// TestMMRMatchesReference appends random leaves and checks proofs of
// random leaves against a reference root.
func TestMMRMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 2000).Draw(t, "n")
		m := &MMR{}
		leaves := make([]Hash, n)
		for i := range leaves {
			leaves[i] = hashOfInt(rapid.IntRange(0, 5).Draw(t, "leaf")) // repeats allowed
			m = m.Append(leaves[i])
		}
		root := m.Root()
		if root != refMMRRoot(leaves) {
			t.Fatal("root differs from reference")
		}
		i := rapid.Uint64Range(0, uint64(n-1)).Draw(t, "i")
		p, err := m.Prove(i)
		if err != nil || !VerifyMMR(root, uint64(n), i, leaves[i], p) {
			t.Fatalf("proof of %d does not verify: %v", i, err)
		}
	})
}

// TestMMRConcurrentReaders reads an MMR from several goroutines while
// another appends to it, writing into the chunk they share.
func TestMMRConcurrentReaders(t *testing.T) {
	base := &MMR{}
	for i := range chunkLen/2 + 3 {
		base = base.Append(hashOfInt(i))
	}
	root, n := base.Root(), base.Leaves()
	var wg sync.WaitGroup
	var stop atomic.Bool
	var bad atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for i := uint64(r); !stop.Load(); i = (i + 3) % n {
				p, err := base.Prove(i)
				if err != nil || base.Root() != root || !VerifyMMR(root, n, i, base.Leaf(i), p) {
					bad.Add(1)
					return
				}
			}
		})
	}
	m := base
	for i := range 3 * chunkLen {
		m = m.Append(hashOfInt(i))
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 || base.Root() != root {
		t.Fatal("readers saw the MMR change")
	}
}
