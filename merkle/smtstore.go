package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/maypok86/otter/v2"
)

// A tree's nodes can live in a store instead of on the heap. Persist writes
// the nodes an Update made, each under a new id (node records are never
// rewritten, so a tree of an older version stays readable while the writer
// moves on), and returns the same tree with its root as a reference. Later
// calls load nodes through a NodeSource, which keeps the recently used ones
// decoded in a cache bounded in bytes: memory is set by that bound, not by
// the tree's size.
//
// A record holds a branch and the branches below it down to the end of its
// band of levels (see NodeSource.SetRecordLevels; a band of one level is a
// record per branch), each with its children's hashes (as every branch
// has): a leaf child inline, a branch child in the same band inline, one
// deeper by the id of its own record. A leaf is therefore never a record of
// its own, and a lookup of any key reads one record per band on its path,
// most of them from the cache.

// NodeReader reads the record of a persisted node. It must be safe for
// concurrent use.
type NodeReader interface {
	ReadNode(id uint64) ([]byte, error)
}

// NodeSource resolves the persisted nodes of the trees of one store. thread-safe.
type NodeSource struct {
	r     NodeReader
	cache *otter.Cache[uint64, *branch]
	pin   uint8 // split depth from which branches are no longer pinned (see ref)
	band  uint8 // levels a record spans (see recordLimit); 1: a record per branch
}

// nodeWeight approximates the heap bytes a decoded record holds, in the
// runtime's size classes: the cache's own entry (about 96), and for each
// branch of the record 112 and its leaf (64) or reference (32) children.
func nodeWeight(_ uint64, b *branch) uint32 { return 96 + branchWeight(b) }

func branchWeight(b *branch) uint32 {
	w := uint32(112)
	for _, k := range b.kids {
		switch x := k.(type) {
		case *leaf:
			w += 64
		case *branch:
			w += branchWeight(x)
		default:
			w += 32
		}
	}
	return w
}

// DefaultRecordLevels is how many levels of a tree one stored record spans
// unless a source is told otherwise; MaxRecordLevels bounds it (a record
// holds at most 2^levels - 1 branches). At 10^7 keys, 4 levels a record
// write 7,299 records a large block where one a branch wrote 25,862, and
// the tree below the pinned levels is one or two records deep; more levels
// rewrite more unchanged branches with each key (a full band of 8 levels
// is 255 branches, about 18 KB).
const (
	DefaultRecordLevels = 4
	MaxRecordLevels     = 8
)

// SetRecordLevels makes the records that Persist writes through s span
// levels levels of the tree (1: one record per branch; 0: the default).
// Records of any span are read back alike, so it can change between runs
// of a store. Call it before the source is used.
func (s *NodeSource) SetRecordLevels(levels int) {
	if levels <= 0 {
		levels = DefaultRecordLevels
	}
	s.band = uint8(min(levels, MaxRecordLevels))
}

// recordLimit returns the split depth below which the branches under one
// rooted at depth bit go in its record. Records cover bands of s.band
// levels, counted from the root down to the pin depth and from there on,
// so that a pinned record holds pinned branches only and PinnedBytes stays
// a bound.
func (s *NodeSource) recordLimit(bit uint8) int {
	b, band, pin := int(bit), int(max(s.band, 1)), int(s.pin)
	if b < pin {
		return min(b-b%band+band, pin)
	}
	return pin + ((b-pin)/band+1)*band
}

// DefaultPinLevels is how many levels of each tree stay decoded in memory
// once read, unless a source is told otherwise; MaxPinLevels bounds it.
const (
	DefaultPinLevels = 20
	MaxPinLevels     = 24
)

// PinnedBytes bounds the heap the pinned levels of one tree can take: at
// most 2^levels - 1 branches, each with its children and its reference.
func PinnedBytes(levels int) int64 {
	return (int64(1)<<clampPin(levels) - 1) * pinnedNodeBytes
}

// pinnedNodeBytes: a branch (112), its children (a leaf 64 or a reference
// 32, two of them) and the reference that holds it (32), in the runtime's
// size classes.
const pinnedNodeBytes = 112 + 2*64 + 32

func clampPin(levels int) int {
	if levels <= 0 {
		return DefaultPinLevels
	}
	return min(levels, MaxPinLevels)
}

// NewNodeSource returns a source reading through r with a cache of decoded
// nodes of about cacheBytes, under the top pinLevels levels of each tree,
// which stay decoded in memory once read (0: DefaultPinLevels).
func NewNodeSource(r NodeReader, cacheBytes int64, pinLevels int) *NodeSource {
	return &NodeSource{r: r, pin: uint8(clampPin(pinLevels)), band: DefaultRecordLevels, cache: otter.Must(&otter.Options[uint64, *branch]{
		MaximumWeight: uint64(max(cacheBytes, 1<<20)),
		Weigher:       nodeWeight,
	})}
}

// Purge drops every cached node (pinned ones stay with their trees): the
// next reads below the pinned levels go to the store.
func (s *NodeSource) Purge() { s.cache.InvalidateAll() }

// CachedBytes returns the weight of the cache's entries, about their heap bytes.
func (s *NodeSource) CachedBytes() uint64 { return s.cache.WeightedSize() }

// ref is a persisted branch. Near the root (split depth below its source's
// pin depth) it keeps its decoded branch: those nodes are on nearly every
// path, and holding them costs a bounded amount (at most 2^pin per tree, see
// PinnedBytes), where reading them through the cache would cost each
// lookup a read per level below what the cache holds. Deeper ones are
// loaded through the source's cache at each use, so a tree holds on the
// heap only those and the nodes an unpersisted Update made.
type ref struct {
	id  uint64
	src *NodeSource
	// b is the pinned branch, set by Persist or by the first load (readers
	// race to set the same immutable value); nil: load through src.
	b atomic.Pointer[branch]
}

func (*ref) isNode() {}

// loadError carries a failed read out of the tree walks, which have no
// error results; the exported entry points turn it back into an error.
type loadError struct{ err error }

// load returns the branch r stands for. A decoded branch is shared by every
// tree and goroutine that loads it: it has gen 0, so no Update edits it in
// place (an Update's gen is at least 1).
func (r *ref) load() *branch {
	if b := r.b.Load(); b != nil {
		return b
	}
	if b, ok := r.src.cache.GetIfPresent(r.id); ok {
		return b
	}
	rec, err := r.src.r.ReadNode(r.id)
	if err != nil {
		panic(loadError{fmt.Errorf("read tree node %d: %w", r.id, err)})
	}
	b, err := decodeBranch(rec, r.src)
	if err != nil {
		panic(loadError{fmt.Errorf("tree node %d: %w", r.id, err)})
	}
	if b.bit < r.src.pin {
		r.b.Store(b)
	} else {
		r.src.cache.Set(r.id, b)
	}
	return b
}

// resolve returns n with a reference replaced by the branch it stands for.
func resolve(n node) node {
	if r, ok := n.(*ref); ok {
		return r.load()
	}
	return n
}

// catch turns a loadError panic into *err; any other panic goes on.
func catch(err *error) {
	if r := recover(); r != nil {
		le, ok := r.(loadError)
		if !ok {
			panic(r)
		}
		*err = le.err
	}
}

// ErrBadNode is returned for a stored node record that does not decode.
var ErrBadNode = errors.New("malformed tree node record")

// Encoding of a record, a branch and the branches below it that share its
// record (see recordLimit):
//
//	bit u8, top u8, skip u32 (little-endian), hashes 2 x 32
//	two children, each: 0x01 key (32) value (32)   a leaf
//	                    0x02 uvarint id            a branch in a record of its own
//	                    0x03 branch                a branch in this record, encoded as above
//
// A tree's root is encoded the same way as a child, with 0x00 for the empty
// tree (EncodeRoot).
const (
	kidEmpty  = 0x00
	kidLeaf   = 0x01
	kidBranch = 0x02
	kidInline = 0x03
)

func appendKid(out []byte, n node) []byte {
	switch x := n.(type) {
	case *leaf:
		out = append(out, kidLeaf)
		out = append(out, x.key[:]...)
		return append(out, x.value[:]...)
	case *ref:
		out = append(out, kidBranch)
		return binary.AppendUvarint(out, x.id)
	case *branch:
		return appendBranch(append(out, kidInline), x)
	case nil:
		return append(out, kidEmpty)
	}
	panic(fmt.Sprintf("merkle: encode a %T child: persist its subtree first", n))
}

func readKid(b []byte, src *NodeSource) (node, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: child missing", ErrBadNode)
	}
	switch b[0] {
	case kidEmpty:
		return nil, b[1:], nil
	case kidLeaf:
		if len(b) < 1+2*Size {
			return nil, nil, fmt.Errorf("%w: leaf child truncated", ErrBadNode)
		}
		return &leaf{key: Hash(b[1:]), value: Hash(b[1+Size:])}, b[1+2*Size:], nil
	case kidBranch:
		id, k := binary.Uvarint(b[1:])
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: branch child id malformed", ErrBadNode)
		}
		return &ref{id: id, src: src}, b[1+k:], nil
	case kidInline:
		return decodeBranchPrefix(b[1:], src)
	}
	return nil, nil, fmt.Errorf("%w: child kind %#x", ErrBadNode, b[0])
}

// appendBranch appends b's encoding to out, the branches below it that are
// in memory (not references) with it.
func appendBranch(out []byte, b *branch) []byte {
	out = append(out, b.bit, b.top)
	out = binary.LittleEndian.AppendUint32(out, b.skip)
	out = append(out, b.hashes[0][:]...)
	out = append(out, b.hashes[1][:]...)
	out = appendKid(out, b.kids[0])
	return appendKid(out, b.kids[1])
}

func decodeBranch(rec []byte, src *NodeSource) (*branch, error) {
	b, rest, err := decodeBranchPrefix(rec, src)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadNode, len(rest))
	}
	return b, nil
}

// decodeBranchPrefix decodes the branch at the start of rec, with the
// branches of its record below it, and returns the bytes after them.
// Nesting is bounded: each branch in a record splits deeper than its
// parent, so there are at most 256 levels of it.
func decodeBranchPrefix(rec []byte, src *NodeSource) (*branch, []byte, error) {
	if len(rec) < 6+2*Size {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrBadNode, len(rec))
	}
	b := &branch{bit: rec[0], top: rec[1], skip: binary.LittleEndian.Uint32(rec[2:])}
	if b.top > b.bit {
		return nil, nil, fmt.Errorf("%w: depth %d above its parent's %d", ErrBadNode, b.bit, b.top)
	}
	b.hashes[0], b.hashes[1] = Hash(rec[6:]), Hash(rec[6+Size:])
	rest := rec[6+2*Size:]
	var err error
	for i := range b.kids {
		if len(rest) > 0 && rest[0] == kidInline && (len(rest) < 3 || int(rest[2]) != int(b.bit)+1) {
			return nil, nil, fmt.Errorf("%w: child %d of a branch at depth %d does not start below it", ErrBadNode, i, b.bit)
		}
		if b.kids[i], rest, err = readKid(rest, src); err != nil {
			return nil, nil, err
		}
		if b.kids[i] == nil || b.hashes[i].IsZero() {
			return nil, nil, fmt.Errorf("%w: child %d empty", ErrBadNode, i)
		}
	}
	return b, rest, nil
}

// PersistedSMT is what a store keeps to reopen a persisted tree.
type PersistedSMT struct {
	Root []byte // the root reference, as encoded by Persist
	Hash Hash
	Size int
}

// Persist writes every node of t that is not in src yet: put is called for
// each, children before parents, with an id from alloc (ids must never be
// reused) and a record it must copy (the buffer is reused). It returns the same tree reading from src, what reopens it, and
// the ids of the stored nodes that the Updates since the last Persist
// replaced: they are not part of the new tree, but of older versions that a
// reader may still hold, so the store deletes them only later. The new nodes
// near the root stay pinned (see ref); deeper ones are read back on demand.
func (t *SMT) Persist(src *NodeSource, alloc func() uint64, put func(id uint64, rec []byte) error) (_ *SMT, _ PersistedSMT, stale []uint64, err error) {
	defer catch(&err)
	var buf []byte // put copies the record, so one buffer serves them all
	var persist func(n node) node
	// inline copies b for its record, which holds the branches above
	// limit: deeper ones are persisted first, in records of their own.
	var inline func(b *branch, limit int) *branch
	inline = func(b *branch, limit int) *branch {
		if b.gen == 0 {
			// Read from a record, or copied by an earlier Persist: it is
			// already in stored form (leaves, references and branches of
			// its band below it) and immutable, so it goes in as it is.
			return b
		}
		d := &branch{bit: b.bit, top: b.top, skip: b.skip, hashes: b.hashes}
		for i, k := range b.kids {
			if kb, ok := k.(*branch); ok && int(kb.bit) < limit {
				d.kids[i] = inline(kb, limit)
			} else {
				d.kids[i] = persist(k)
			}
		}
		return d
	}
	persist = func(n node) node {
		b, ok := n.(*branch)
		if !ok {
			return n // a leaf (inline), a reference, or empty
		}
		d := inline(b, src.recordLimit(b.bit))
		id := alloc()
		buf = appendBranch(buf[:0], d)
		if err := put(id, buf); err != nil {
			panic(loadError{fmt.Errorf("write tree node %d: %w", id, err)})
		}
		r := &ref{id: id, src: src}
		if d.bit < src.pin {
			r.b.Store(d)
		}
		return r
	}
	root := persist(t.root)
	next := &SMT{root: root, rootHash: t.rootHash, size: t.size, gen: t.gen}
	return next, PersistedSMT{Root: appendKid(nil, root), Hash: t.rootHash, Size: t.size}, t.stale.all(), nil
}

// LoadSMT returns the persisted tree p, reading its nodes from src.
func LoadSMT(p PersistedSMT, src *NodeSource) (*SMT, error) {
	root, rest, err := readKid(p.Root, src)
	if err != nil {
		return nil, fmt.Errorf("load tree root: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("load tree root: %w: %d trailing bytes", ErrBadNode, len(rest))
	}
	if (root == nil) != p.Hash.IsZero() {
		return nil, fmt.Errorf("load tree root: %w: root %s for an empty tree or none for a full one", ErrBadNode, p.Hash.Short())
	}
	return &SMT{root: root, rootHash: p.Hash, size: p.Size}, nil
}

// TryGet is Get for a tree whose nodes may need reading: it returns the
// read error instead of panicking.
func (t *SMT) TryGet(key Hash) (v Hash, ok bool, err error) {
	defer catch(&err)
	v, ok = t.Get(key)
	return v, ok, nil
}

// TryProve is Prove with the read error returned.
func (t *SMT) TryProve(key Hash) (p SMTProof, err error) {
	defer catch(&err)
	return t.Prove(key), nil
}

// TryLookup is Lookup with the read error returned.
func (t *SMT) TryLookup(key Hash) (p SMTProof, v Hash, ok bool, err error) {
	defer catch(&err)
	p, v, ok = t.Lookup(key)
	return p, v, ok, nil
}

// TryUpdate is Update with the read error returned.
func (t *SMT) TryUpdate(kvs []KV) (next *SMT, err error) {
	defer catch(&err)
	return t.Update(kvs), nil
}

// TryWalk is Walk with the read error returned.
func (t *SMT) TryWalk(fn func(k, v Hash) bool) (err error) {
	defer catch(&err)
	t.Walk(fn)
	return nil
}

// LoadTop reads the branches of t that stay pinned (split depth below the
// pin depth of the source each is read from) from the store, so that the
// lookups and updates after it find them in memory rather than each paying
// a read on first use; stop is asked before each node and ends the walk
// early when it says so. Bounded: at most 2^pin branches.
func (t *SMT) LoadTop(stop func() bool) (err error) {
	defer catch(&err)
	var walk func(n node) bool
	walk = func(n node) bool {
		if stop() {
			return false
		}
		var b *branch
		switch x := n.(type) {
		case *branch: // in memory: made by an Update not persisted yet, or in its parent's record
			b = x
		case *ref:
			if b = x.load(); b.bit >= x.src.pin {
				return true
			}
		default:
			return true
		}
		return walk(b.kids[0]) && walk(b.kids[1])
	}
	walk(t.root)
	return nil
}

// Pending returns how many stored nodes the Updates since the last Persist
// replaced (what Persist will report stale).
func (t *SMT) Pending() int { return t.stale.len() }
