package merkle

import (
	"fmt"
	"math/bits"
	"slices"
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
// Nodes are numbered by their position in post-order (each parent right
// after its right subtree), so a perfect subtree is one contiguous run, the
// peaks are found from the leaf count alone, and appending only ever adds
// positions past the end. That numbering is also how nodes are persisted:
// an MMR may hold every node in memory, or only those past a boundary, the
// rest being read from an MMRStore (see LoadMMR, Unpersisted, Persisted).
// Either way Root, Peaks and Append touch only memory.
//
// An MMR is immutable once returned. Append may write into storage it
// shares with the receiver (only ever past the receiver's end), which keeps
// appends cheap but means the history must stay linear: of two MMRs
// appended to the same receiver, only the later one may be used. Dropping a
// candidate and appending another to the same receiver is fine. Any number
// of goroutines may read an MMR while another appends to it. thread-safe.
type MMR struct {
	// All fields are immutable after construction; only the parts of
	// chunks past this MMR's end are written, by Append.
	leaves uint64
	// peaks are kept apart from the nodes so that a disk-backed MMR can
	// give its root and grow without reading the store: the left sibling
	// of every merge an append makes is an old peak.
	peaks []Hash
	// src holds the nodes at positions below base.
	src  MMRStore
	base uint64
	// chunks holds the nodes from base on, node base+i at chunkOf(i). They
	// are cut into chunks so that growing never copies the history: a
	// single slice of a long chain would stall a block on a copy of tens
	// of MB.
	chunks [][]Hash
}

// MMRStore reads nodes of an MMR that were persisted, by post-order
// position: the first node of Unpersisted is at position first, the next at
// first+1, and so on. ReadMMRNodes fills out[i] with the node at pos[i]
// (len(out) == len(pos)). Readers of an MMR may call it concurrently, so it
// must be safe for that. The nodes an MMR reads must stay as they were
// written for as long as that MMR is used.
type MMRStore interface {
	ReadMMRNodes(pos []uint64, out []Hash) error
}

const (
	// maxMMRHeight bounds proofs: a uint64 leaf count has at most 64
	// mountains, each at most 63 levels high.
	maxMMRHeight = 64
	// maxMMRLeaves keeps the number of nodes, about twice the leaves,
	// within a uint64 position.
	maxMMRLeaves = 1<<63 - 1
	// chunkBits sets the size of a full chunk, 1024 nodes (32 KiB): small
	// next to the history of any real chain, large enough that the list of
	// chunks stays short.
	chunkBits = 10
	chunkLen  = 1 << chunkBits
	// The chunks after a boundary start at 4 nodes and double up to
	// chunkLen: a store that persists every block starts afresh after each
	// one, and a full chunk for its two or so new nodes would be 32 KiB of
	// garbage per block.
	minChunkBits = 2
	rampLen      = chunkLen - 1<<minChunkBits // nodes in the chunks smaller than chunkLen
)

// chunkOf locates node base+i: its chunk and its offset in that chunk.
func chunkOf(i uint64) (chunk int, off uint64) {
	if i < rampLen {
		// Chunk c starts at 2^(c+minChunkBits) - 2^minChunkBits.
		x := i + 1<<minChunkBits
		chunk = bits.Len64(x) - 1 - minChunkBits
		return chunk, x - 1<<(chunk+minChunkBits)
	}
	i -= rampLen
	return chunkBits - minChunkBits + int(i>>chunkBits), i & (chunkLen - 1)
}

func chunkSize(chunk int) int { return 1 << min(chunk+minChunkBits, chunkBits) }

// LoadMMR returns the MMR of the given number of leaves all of whose nodes
// are in src, as Unpersisted gave them. It reads only the peaks, in one
// ReadMMRNodes call, and trusts src: a caller that knows the root should
// compare it.
func LoadMMR(leaves uint64, src MMRStore) (*MMR, error) {
	if src == nil {
		panic("merkle: LoadMMR with a nil MMRStore")
	}
	if leaves > maxMMRLeaves {
		return nil, fmt.Errorf("load MMR of %d leaves: more than %d", leaves, uint64(maxMMRLeaves))
	}
	m := &MMR{leaves: leaves, src: src}
	m.base = m.size()
	if leaves == 0 {
		return m, nil
	}
	var buf [maxMMRHeight]uint64
	pos := peakPositions(leaves, &buf)
	m.peaks = make([]Hash, len(pos))
	if err := src.ReadMMRNodes(pos, m.peaks); err != nil {
		return nil, fmt.Errorf("load MMR of %d leaves: read peaks: %w", leaves, err)
	}
	return m, nil
}

// Unpersisted returns the nodes appended since m's nodes were last all in a
// store (since LoadMMR or Persisted, or since the empty MMR), in a new slice:
// nodes[i] is the node at position first+i. A store writes them with the
// block that added the last leaf, then calls Persisted.
func (m *MMR) Unpersisted() (first uint64, nodes []Hash) {
	n := m.size() - m.base
	if n == 0 {
		return m.base, nil
	}
	nodes = make([]Hash, 0, n)
	for _, c := range m.chunks {
		nodes = append(nodes, c[:min(uint64(len(c)), n-uint64(len(nodes)))]...)
	}
	return m.base, nodes
}

// Since returns the nodes m holds in memory past those of stored, an MMR m
// grew from whose nodes are all in a store (nil: none are): what a store
// writes when m's leaves commit after stored's. Like Unpersisted, from
// position first.
func (m *MMR) Since(stored *MMR) (first uint64, nodes []Hash) {
	first, nodes = m.Unpersisted()
	if stored != nil && stored.size() > first {
		skip := min(stored.size()-first, uint64(len(nodes)))
		first, nodes = first+skip, nodes[skip:]
	}
	return first, nodes
}

// Persisted returns m as an MMR whose nodes are all in src, the caller
// having just written Unpersisted there: the same leaves and peaks, nothing
// else held in memory. m stays valid, and keeps the memory it holds for as
// long as it is used.
func (m *MMR) Persisted(src MMRStore) *MMR {
	if src == nil {
		panic("merkle: Persisted with a nil MMRStore")
	}
	return &MMR{leaves: m.leaves, peaks: m.peaks, src: src, base: m.size()}
}

// Append returns a new MMR with leaf added. m stays valid and unchanged.
// O(1) amortised: one Join per merge, and merges average one per leaf. It
// never reads the store of a disk-backed MMR.
func (m *MMR) Append(leaf Hash) *MMR {
	// Each trailing one bit of the old count is a mountain of the same
	// height as the new one, just to its left, that now merges with it:
	// the last peaks, smallest first.
	merges := bits.TrailingZeros64(^m.leaves)
	keep := len(m.peaks) - merges
	next := &MMR{leaves: m.leaves + 1, peaks: make([]Hash, keep+1), src: m.src, base: m.base, chunks: m.chunks}
	copy(next.peaks, m.peaks[:keep])
	pos := m.size()
	next.set(pos, leaf)
	h := leaf
	for i := range merges {
		h = Join(m.peaks[len(m.peaks)-1-i], h)
		pos++
		next.set(pos, h)
	}
	next.peaks[keep] = h
	return next
}

// size is the number of nodes: every leaf, plus one parent for each merge,
// and merges happen once per carry in the leaf count.
func (m *MMR) size() uint64 { return 2*m.leaves - uint64(bits.OnesCount64(m.leaves)) }

// memNode returns the node at pos, which must be at or past m.base.
func (m *MMR) memNode(pos uint64) Hash {
	c, off := chunkOf(pos - m.base)
	return m.chunks[c][off]
}

// set writes the node at pos, the next one past the end.
func (m *MMR) set(pos uint64, h Hash) {
	c, off := chunkOf(pos - m.base)
	if off == 0 {
		m.chunks = append(m.chunks[:c], make([]Hash, chunkSize(c)))
	}
	m.chunks[c][off] = h
}

// Leaves returns the number of leaves.
func (m *MMR) Leaves() uint64 { return m.leaves }

// Leaf returns leaf i. It panics if i >= Leaves(), like a slice index, and
// also if the leaf has to be read from the store and that fails: where a
// read can fail (a disk-backed MMR), use LeafAt.
func (m *MMR) Leaf(i uint64) Hash {
	if i >= m.leaves {
		panic(fmt.Sprintf("merkle: MMR leaf %d out of range [0, %d)", i, m.leaves))
	}
	h, err := m.LeafAt(i)
	if err != nil {
		panic("merkle: " + err.Error())
	}
	return h
}

// LeafAt returns leaf i, reading the store if needed. Past the end it
// returns an error wrapping ErrLeafOutOfRange.
func (m *MMR) LeafAt(i uint64) (Hash, error) {
	if i >= m.leaves {
		return Hash{}, fmt.Errorf("read MMR leaf %d of %d: %w", i, m.leaves, ErrLeafOutOfRange)
	}
	pos := leafPos(i)
	switch {
	case pos >= m.base:
		return m.memNode(pos), nil
	case i == m.leaves-1 && m.leaves&1 == 1: // a mountain of one leaf
		return m.peaks[len(m.peaks)-1], nil
	}
	var out [1]Hash
	if err := m.src.ReadMMRNodes([]uint64{pos}, out[:]); err != nil {
		return Hash{}, fmt.Errorf("read MMR leaf %d (node %d): %w", i, pos, err)
	}
	return out[0], nil
}

// Peaks returns the mountain roots, left to right (largest first).
func (m *MMR) Peaks() []Hash { return slices.Clone(m.peaks) }

// peakPositions fills buf with the positions of the peaks of an MMR of the
// given number of leaves, left to right.
func peakPositions(leaves uint64, buf *[maxMMRHeight]uint64) []uint64 {
	out := buf[:0]
	var pos uint64
	for height := maxMMRHeight - 1; height >= 0; height-- {
		if leaves&(1<<height) == 0 {
			continue
		}
		pos += subtreeSize(height)
		out = append(out, pos-1)
	}
	return out
}

// Root returns Join(countHash(Leaves()), bag(Peaks())), or the zero Hash
// when empty (see MMR). It costs one Join per peak, O(log n), and does not
// allocate.
func (m *MMR) Root() Hash { return mmrRoot(m.leaves, m.peaks) }

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
func mountainOf(leaves, leaf uint64) (height int, local, pos uint64) {
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
func subtreeSize(height int) uint64 { return 1<<(height+1) - 1 }

// leafPos is the position of leaf i in post-order: every leaf before it
// plus one parent for each merge they caused.
func leafPos(i uint64) uint64 { return 2*i - uint64(bits.OnesCount64(i)) }
