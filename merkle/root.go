package merkle

import "encoding/binary"

// Root returns the binary Merkle root of an ordered list of leaf hashes.
//
// Leaves are paired level by level; an odd node at the end of a level is
// promoted unchanged to the next level, never paired with a copy of itself,
// so that [a b c] and [a b c c] have different roots. The tree root is then
// bound to the number of leaves:
//
//	Root([])     = zero Hash
//	Root(leaves) = Join(countHash(len(leaves)), treeRoot)
//
// Promoting odd nodes makes the tree the same shape as RFC 6962's (the left
// child always holds the largest power of two strictly below the size), so
// it is computed here like a Merkle Mountain Range: a stack of perfect
// subtrees merged as the leaf count carries, then folded right to left. The
// stack lives in a fixed array, so Root does not allocate.
func Root(leaves []Hash) Hash {
	if len(leaves) == 0 {
		return Hash{}
	}
	// stack[i] holds a perfect subtree; after pushing leaf i, the heights on
	// the stack are the set bits of i+1, largest first.
	var stack [64]Hash
	top := 0
	for i, leaf := range leaves {
		h := leaf
		// Each trailing one bit of i is a finished subtree of the same
		// height as h waiting on the stack to its left.
		for c := uint64(i); c&1 == 1; c >>= 1 {
			top--
			h = Join(stack[top], h)
		}
		stack[top] = h
		top++
	}
	root := stack[top-1]
	for i := top - 2; i >= 0; i-- {
		root = Join(stack[i], root)
	}
	return Join(countHash(uint64(len(leaves))), root)
}

// countHash encodes n as a Hash (little-endian in the first 8 bytes) so that
// a count can be mixed into a root with a single Join.
func countHash(n uint64) Hash {
	var h Hash
	binary.LittleEndian.PutUint64(h[:8], n)
	return h
}
