package merkle

import (
	"fmt"
	"math/bits"
)

// MMR is an append-only Merkle Mountain Range of leaf hashes: the chain
// commitment, one leaf per block. The zero value is empty.
//
// The leaves are grouped into perfect binary trees ("mountains"), one per set
// bit of the leaf count, largest first. Their roots are the peaks. The root
// of the range is defined as
//
//	Root() = zero Hash                                 if there are no leaves
//	Root() = Join(countHash(leaves), bag(peaks))       otherwise
//	bag([p])          = p
//	bag([p0, p1, …])  = Join(p0, bag([p1, …]))         (folded right to left)
//
// where countHash(n) is the Hash holding n as a little-endian uint64 in its
// first 8 bytes (as in Root). A single peak is thus Join(countHash(n), p).
// Mixing in the count commits to the size, so a range and a prefix of it
// that happens to have the same bagged peaks cannot share a root.
//
// An MMR is immutable once returned. Append may write into storage it
// shares with the receiver (only ever past the receiver's end), which keeps
// appends cheap but means the history must stay linear: of two MMRs
// appended to the same receiver, only the later one may be used. Dropping a
// candidate and appending another to the same receiver is fine. Any number
// of goroutines may read an MMR while another appends to it. thread-safe.
type MMR struct {
	// chunks holds every node in post-order (each parent right after its
	// right subtree), so a perfect subtree is one contiguous run and the
	// peaks are found from the leaf count alone. The nodes are cut into
	// fixed-size chunks so that growing never copies the history: a single
	// slice of a long chain would stall a block on a copy of tens of MB.
	chunks [][]Hash
	leaves uint64
}

const (
	// maxMMRHeight bounds proofs: a uint64 leaf count has at most 64
	// mountains, each at most 63 levels high.
	maxMMRHeight = 64
	// chunkBits sets the chunk size, 1024 nodes (32 KiB): small next to
	// the history of any real chain, large enough that the list of chunks
	// stays short.
	chunkBits = 10
	chunkLen  = 1 << chunkBits
)

// Append returns a new MMR with leaf added. m stays valid and unchanged.
// O(1) amortised: one Join per merge, and merges average one per leaf.
func (m *MMR) Append(leaf Hash) *MMR {
	next := &MMR{chunks: m.chunks, leaves: m.leaves + 1}
	pos := m.size()
	next.set(pos, leaf)
	h := leaf
	// Each trailing one bit of the old count is a mountain of the same
	// height as h, just to its left, that now merges with it.
	for height, c := 0, m.leaves; c&1 == 1; height, c = height+1, c>>1 {
		h = Join(next.node(pos-subtreeSize(height)), h)
		pos++
		next.set(pos, h)
	}
	return next
}

// size is the number of nodes: every leaf, plus one parent for each merge,
// and merges happen once per carry in the leaf count.
func (m *MMR) size() int { return int(2*m.leaves) - bits.OnesCount64(m.leaves) }

func (m *MMR) node(pos int) Hash { return m.chunks[pos>>chunkBits][pos&(chunkLen-1)] }

// set writes the node at pos, the next one past the end.
func (m *MMR) set(pos int, h Hash) {
	if pos&(chunkLen-1) == 0 {
		m.chunks = append(m.chunks[:pos>>chunkBits], make([]Hash, chunkLen))
	}
	m.chunks[pos>>chunkBits][pos&(chunkLen-1)] = h
}

// Leaves returns the number of leaves.
func (m *MMR) Leaves() uint64 { return m.leaves }

// Leaf returns leaf i. It panics if i >= Leaves(), like a slice index.
func (m *MMR) Leaf(i uint64) Hash {
	if i >= m.leaves {
		panic(fmt.Sprintf("merkle: MMR leaf %d out of range [0, %d)", i, m.leaves))
	}
	return m.node(leafPos(i))
}

// Peaks returns the mountain roots, left to right (largest first).
func (m *MMR) Peaks() []Hash {
	var buf [maxMMRHeight]Hash
	return append([]Hash(nil), m.peaks(&buf)...)
}

// peaks fills buf with the peaks so Root does not allocate.
func (m *MMR) peaks(buf *[maxMMRHeight]Hash) []Hash {
	out := buf[:0]
	pos := 0
	for height := maxMMRHeight - 1; height >= 0; height-- {
		if m.leaves&(1<<height) == 0 {
			continue
		}
		pos += subtreeSize(height)
		out = append(out, m.node(pos-1))
	}
	return out
}

// Root returns Join(countHash(Leaves()), bag(Peaks())), or the zero Hash
// when empty (see MMR). It costs one Join per peak, O(log n), and does not
// allocate.
func (m *MMR) Root() Hash {
	var buf [maxMMRHeight]Hash
	return mmrRoot(m.leaves, m.peaks(&buf))
}

func mmrRoot(leaves uint64, peaks []Hash) Hash {
	if leaves == 0 {
		return Hash{}
	}
	bag := peaks[len(peaks)-1]
	for i := len(peaks) - 2; i >= 0; i-- {
		bag = Join(peaks[i], bag)
	}
	return Join(countHash(leaves), bag)
}

// mountainOf locates leaf in an MMR of the given size: the height of its
// mountain, its index inside that mountain and the position of the
// mountain's first node.
func mountainOf(leaves, leaf uint64) (height int, local uint64, pos int) {
	var start uint64
	for height = maxMMRHeight - 1; height >= 0; height-- {
		width := uint64(1) << height
		if leaves&width == 0 {
			continue
		}
		if leaf < start+width {
			break
		}
		start += width
		pos += subtreeSize(height)
	}
	return height, leaf - start, pos
}

// subtreeSize is the number of nodes of a perfect tree of the given height.
func subtreeSize(height int) int { return 1<<(height+1) - 1 }

// leafPos is the position of leaf i in post-order: every leaf before it
// plus one parent for each merge they caused.
func leafPos(i uint64) int { return int(2*i) - bits.OnesCount64(i) }
