package merkle

import (
	"encoding/binary"
	"math/bits"
)

// KV is one key/value pair of a sparse Merkle tree. A zero Value in an
// Update deletes the key.
type KV struct{ Key, Value Hash }

// SMT is a persistent compact sparse Merkle tree over 256-bit keys: the
// account and nullifier state. The zero value is an empty tree.
//
// The root is defined by the key/value set alone, whatever the order of
// insertion. For a set S of keys sharing their first d bits (bit d of a key
// is bit 7-d%8 of byte d/8, most significant first):
//
//	hash(S, d) = zero Hash                               if S is empty
//	hash(S, d) = LeafHash(k, v)                          if S = {k: v}
//	hash(S, d) = Join(hash(S0, d+1), hash(S1, d+1))      otherwise
//
// where S0 and S1 are the keys of S with bit d clear and set. A leaf thus
// sits at the shortest prefix that sets it apart, not at depth 256.
//
// An SMT is immutable: Update returns a new tree that shares every
// untouched node with the old one, and all hashes are computed before
// Update returns. Any number of goroutines may read any tree, including
// while another goroutine is updating it. thread-safe.
type SMT struct {
	root     node
	rootHash Hash
	size     int
	gen      uint64 // generation of the Update that made this tree; see branch.gen
	// stale lists the stored nodes that Updates since the last Persist
	// replaced (see Persist); nil for a tree that lives only in memory.
	stale *staleIDs
}

// staleIDs is a persistent list of stored node ids: the list of a tree an
// Update made holds that Update's ids and shares the rest with the tree it
// was made from (which may have other successors). A copy of the whole
// list at each Update made the Updates between two Persists quadratic in
// their count: a quarter of a catch-up's allocations with trees deferred
// over hundreds of blocks.
type staleIDs struct {
	ids  []uint64
	prev *staleIDs
	n    int // ids here and in every prev
}

// add returns the list s with more after it; more is owned by the result.
func (s *staleIDs) add(more []uint64) *staleIDs {
	if len(more) == 0 {
		return s
	}
	return &staleIDs{ids: more, prev: s, n: s.len() + len(more)}
}

func (s *staleIDs) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// all returns the ids in the order they were added.
func (s *staleIDs) all() []uint64 {
	if s == nil {
		return nil
	}
	out := make([]uint64, s.n)
	end := s.n
	for c := s; c != nil; c = c.prev {
		end -= len(c.ids)
		copy(out[end:], c.ids)
	}
	return out
}

// node is a *leaf, a *branch or a *ref (a stored branch, see Persist); a
// nil node is the empty subtree.
//
// The in-memory tree is path-compressed: a branch exists only where keys
// actually split, and a leaf hangs right below the branch where its key
// parts from the others. The definition above still hashes the levels a
// branch skips (one Join with an empty sibling per level), so the tree
// stores each child's hash as seen from its parent, those levels included.
//
// Hashes live in the parent rather than in the child: an Update, which
// needs the hash of every untouched sibling along the paths it rewrites,
// finds it in the node it is copying anyway instead of loading the sibling;
// a proof reads only the nodes on its path; and a leaf needs no hash of its
// own, so it is 64 bytes. A branch is 112 bytes (an allocation size class
// of the runtime), about 176 bytes per key in all.
type node interface{ isNode() }

// leaf holds one key. Leaves are never modified: a new value is a new leaf.
type leaf struct{ key, value Hash }

// branch is a node where the keys below it split on bit `bit`. All keys
// below it also share bits [top, bit), the levels it skips.
type branch struct {
	kids [2]node // never nil: a branch left with one child collapses into it
	// hashes[i] is the hash of kids[i] at depth bit+1. Within the Update
	// that made this branch, a zero entry means "not computed yet"; no
	// subtree hashes to zero since only the empty one does.
	hashes [2]Hash
	// gen is the generation of the Update call that created the node.
	// Only that call may modify it, which lets a batch copy a path once and
	// then edit its own copy in place. Nodes reachable from a tree all have
	// a gen at most that tree's, so a new gen is never already in use.
	gen uint64
	bit uint8
	top uint8 // parent's bit + 1, or 0 for the root
	// skip holds the shared bits [top, bit), the last one in bit 0, when
	// there are at most 32 of them. With random keys there are rarely more
	// than a few, and keeping them here (in what would be padding) spares
	// walking down to a leaf to learn them.
	skip uint32
}

func (*leaf) isNode()   {}
func (*branch) isNode() {}

// NewSMT returns an empty tree.
func NewSMT() *SMT { return &SMT{} }

// Root returns the root hash; the zero Hash for an empty tree.
func (t *SMT) Root() Hash { return t.rootHash }

// Len returns the number of keys.
func (t *SMT) Len() int { return t.size }

// Get returns the value stored at key.
func (t *SMT) Get(key Hash) (Hash, bool) {
	n := t.root
	for {
		switch x := resolve(n).(type) {
		case *branch:
			n = x.kids[bitOf(key, int(x.bit))]
		case *leaf:
			if x.key == key {
				return x.value, true
			}
			return Hash{}, false
		default:
			return Hash{}, false
		}
	}
}

// Walk calls fn for every key in increasing key order until fn returns
// false.
func (t *SMT) Walk(fn func(k, v Hash) bool) { walk(t.root, fn) }

func walk(n node, fn func(k, v Hash) bool) bool {
	switch x := resolve(n).(type) {
	case *branch:
		return walk(x.kids[0], fn) && walk(x.kids[1], fn)
	case *leaf:
		return fn(x.key, x.value)
	}
	return true
}

// maxSkip is the longest run of skipped levels that branch.skip holds.
const maxSkip = 32

// anyKey returns a key below b; all of them share b's prefix. It walks
// down to a leaf, so it is used only where skip does not tell: a branch
// that skips more than maxSkip levels, which random keys almost never make,
// or one that moves up when a deletion removes the branch above it.
func anyKey(b *branch) Hash {
	n := node(b)
	for {
		switch x := resolve(n).(type) {
		case *branch:
			n = x.kids[0]
		case *leaf:
			return x.key
		}
	}
}

// setSkip records the skipped bits of b, reading them from key, any key
// below b.
func (b *branch) setSkip(key Hash) {
	b.skip = 0
	if n := int(b.bit) - int(b.top); n <= maxSkip {
		b.skip = prefixBits(key, int(b.top), n)
	}
}

// diverge returns the first depth in [top, bit) at which key leaves the
// bits shared below b, or bit if it does not.
func (b *branch) diverge(key Hash) int {
	top, bit := int(b.top), int(b.bit)
	n := bit - top
	if n > maxSkip {
		return min(commonPrefix(anyKey(b), key), bit)
	}
	x := prefixBits(key, top, n) ^ b.skip
	if x == 0 {
		return bit
	}
	return top + bits.LeadingZeros32(x) - (32 - n)
}

// sharedBit returns bit d, top <= d < bit, of every key below b.
func (b *branch) sharedBit(d int) int {
	if int(b.bit)-int(b.top) > maxSkip {
		return bitOf(anyKey(b), d)
	}
	return int(b.skip>>(int(b.bit)-1-d)) & 1
}

// hashAt returns the hash of b's subtree at depth to, top <= to <= bit:
// the Join of its children, lifted through the skipped levels above it.
func (b *branch) hashAt(to int) Hash {
	h := Join(b.hashes[0], b.hashes[1])
	bit := int(b.bit)
	if bit-int(b.top) > maxSkip {
		return chain(h, anyKey(b), bit, to)
	}
	for d := bit - 1; d >= to; d-- {
		if b.skip>>(bit-1-d)&1 == 0 {
			h = Join(h, Hash{})
		} else {
			h = Join(Hash{}, h)
		}
	}
	return h
}

// chain lifts h, the hash of the subtree holding key's prefix at depth
// from, to depth to (to <= from) through levels that have no other keys.
func chain(h, key Hash, from, to int) Hash {
	for d := from - 1; d >= to; d-- {
		if bitOf(key, d) == 0 {
			h = Join(h, Hash{})
		} else {
			h = Join(Hash{}, h)
		}
	}
	return h
}

// prefixBits returns bits [from, from+n) of key, n <= 32, the last one in
// bit 0.
func prefixBits(key Hash, from, n int) uint32 {
	if n == 0 {
		return 0
	}
	// Five bytes hold any 32 bits, whatever their offset in the first byte.
	var w uint64
	for i := from >> 3; i < from>>3+5; i++ {
		w <<= 8
		if i < Size {
			w |= uint64(key[i])
		}
	}
	return uint32(w>>(40-from&7-n)) & (1<<n - 1)
}

// bitOf returns bit d of key, most significant bit of byte 0 first.
func bitOf(key Hash, d int) int { return int(key[d>>3]>>(7-d&7)) & 1 }

// commonPrefix returns the number of leading bits a and b share (256 if
// they are equal).
func commonPrefix(a, b Hash) int {
	for i := 0; i < Size; i += 8 {
		x := binary.BigEndian.Uint64(a[i:]) ^ binary.BigEndian.Uint64(b[i:])
		if x != 0 {
			return i*8 + bits.LeadingZeros64(x)
		}
	}
	return 8 * Size
}

// compareKeys orders keys as big-endian numbers, the order of Walk.
func compareKeys(a, b Hash) int {
	for i := 0; i < Size; i += 8 {
		x, y := binary.BigEndian.Uint64(a[i:]), binary.BigEndian.Uint64(b[i:])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
