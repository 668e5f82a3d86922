package merkle

import (
	"slices"
	"sync"
)

// forkMinBatch is the batch size from which Update splits its work (sort,
// merge and hashing) between two goroutines, one per half of the key space.
// On the 2-core machines this runs on, BenchmarkSMTUpdate has a batch of
// 4096 keys 1.6x faster forked, and 256 keys 1.4x; the break-even is
// between 16 and 64 keys, so this stays on the safe side of it. A variable
// so that the benchmark can compare both ways.
var forkMinBatch = 128

// Update returns a new tree with kvs applied; a zero Value deletes its key.
// If a key appears more than once the last pair wins, as if the pairs were
// applied one by one. t is not modified.
//
// The batch is sorted and merged into the tree in one pass, so each touched
// path is copied once however many keys share it, and the new nodes are
// hashed once, bottom up, after the merge: an upper node shared by many
// keys costs one Join per batch, not one per key. A batch of forkMinBatch
// keys or more is split between the calling goroutine and one more, which
// is done before Update returns.
func (t *SMT) Update(kvs []KV) *SMT {
	u := updater{gen: t.gen + 1, fork: forkMinBatch}
	root := u.merge(t.root, t.rootHash, sortBatch(kvs, u.fork), 0)
	next := &SMT{root: root, rootHash: t.rootHash, size: t.size + u.added, gen: u.gen, stale: t.stale.add(u.stale)}
	if root != t.root {
		next.rootHash = u.hashOf(root)
	}
	return next
}

// BuildSMT returns a tree holding kvs, as NewSMT().Update(kvs).
func BuildSMT(kvs []KV) *SMT { return NewSMT().Update(kvs) }

// updater carries the state of one Update call.
type updater struct {
	gen   uint64 // nodes with this gen were made by this call and are editable
	added int    // keys inserted minus keys deleted
	// fork is the batch size at which to hand half of the work to a
	// second goroutine; 0 once that has been done.
	fork int
	// stale collects the stored nodes this call replaced (see Persist).
	stale []uint64
}

// merge applies kvs, sorted and all sharing the first top bits, to n, the
// subtree at depth top whose hash is h, and returns the new subtree at the
// same depth. The caller keeps its stored hash of n only if merge returns n
// itself: any other node is new to this call, or moved, and gets hashed at
// the end.
func (u *updater) merge(n node, h Hash, kvs []KV, top int) node {
	if len(kvs) == 0 {
		return n
	}
	switch x := n.(type) {
	case *ref:
		// A stored branch is loaded to be merged into; it is replaced
		// unless the batch changed nothing below it, and then the parent
		// keeps the reference.
		b := x.load()
		m := u.mergeBranch(b, kvs, top)
		if m == node(b) {
			return x
		}
		u.stale = append(u.stale, x.id)
		return m
	case *branch:
		return u.mergeBranch(x, kvs, top)
	case *leaf:
		return u.mergeLeaf(x, h, kvs, top)
	default:
		return u.build(kvs, nil, Hash{}, top)
	}
}

func (u *updater) mergeLeaf(l *leaf, h Hash, kvs []KV, top int) node {
	_, found := slices.BinarySearchFunc(kvs, l.key, func(kv KV, k Hash) int { return compareKeys(kv.Key, k) })
	if !found {
		return u.build(kvs, l, h, top)
	}
	if len(kvs) == 1 && kvs[0].Value == l.value {
		return l // rewritten with the value it has
	}
	u.added-- // the batch holds this key; build counts it again if it stays
	return u.build(kvs, nil, Hash{}, top)
}

func (u *updater) mergeBranch(b *branch, kvs []KV, top int) node {
	bit := int(b.bit)
	if bit > top {
		// Keys of a sorted batch that leave b's shared bits earliest are
		// at its ends.
		if d := min(b.diverge(kvs[0].Key), b.diverge(kvs[len(kvs)-1].Key)); d < bit {
			return u.split(b, kvs, top, d)
		}
	}
	s := searchBit(kvs, bit)
	var kids [2]node
	var hashes [2]Hash // left zero (to compute later) unless forked
	if u.forks(kvs, s) {
		kids, hashes = u.forkMerge(b.kids, b.hashes, kvs, s, bit+1)
	} else {
		kids[0] = u.merge(b.kids[0], b.hashes[0], kvs[:s], bit+1)
		kids[1] = u.merge(b.kids[1], b.hashes[1], kvs[s:], bit+1)
	}
	if kids == b.kids {
		return b
	}
	if kids[0] == nil {
		return u.retop(kids[1], top)
	}
	if kids[1] == nil {
		return u.retop(kids[0], top)
	}
	nb := u.own(b)
	for i, k := range kids {
		if k != nb.kids[i] {
			nb.kids[i], nb.hashes[i] = k, hashes[i]
		}
	}
	return nb
}

// forks reports whether to split kvs, whose bit-1 half starts at s, between
// two goroutines; only the first split worth it forks.
func (u *updater) forks(kvs []KV, s int) bool {
	if u.fork == 0 || len(kvs) < u.fork || s == 0 || s == len(kvs) {
		return false
	}
	u.fork = 0
	return true
}

// forkMerge merges kvs[:s] into kids[0] and kvs[s:] into kids[1] in two
// goroutines, and hashes the results there too. The halves share no node
// that either writes: each one copies only nodes below its own kid.
func (u *updater) forkMerge(kids [2]node, hashes [2]Hash, kvs []KV, s, top int) ([2]node, [2]Hash) {
	parts := [2][]KV{kvs[:s], kvs[s:]}
	subs := [2]updater{{gen: u.gen}, {gen: u.gen}}
	var failed [2]any // a failed node read in either half, raised once both are done
	half := func(i int) {
		defer func() { failed[i] = recover() }()
		n := subs[i].merge(kids[i], hashes[i], parts[i], top)
		if n != kids[i] {
			kids[i], hashes[i] = n, subs[i].hashOf(n)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { half(0) })
	half(1)
	wg.Wait()
	for _, r := range failed {
		if r != nil {
			panic(r)
		}
	}
	u.added += subs[0].added + subs[1].added
	u.stale = append(append(u.stale, subs[0].stale...), subs[1].stale...)
	return kids, hashes
}

// split handles a batch that leaves b's shared bits at bit d (top <= d <
// b.bit): if anything is inserted there, a new branch at d takes b's place
// with b one level below it.
func (u *updater) split(b *branch, kvs []KV, top, d int) node {
	shared := kvs[0].Key // shares bits [top, d) with b; read before build edits kvs
	s := searchBit(kvs, d)
	side := b.sharedBit(d)
	near, far := kvs[:s], kvs[s:]
	if side == 1 {
		near, far = far, near
	}
	other := u.build(far, nil, Hash{}, d+1)
	if other == nil {
		// Only deletions of absent keys fell outside b's prefix.
		return u.merge(b, Hash{}, near, top)
	}
	moved := u.merge(u.retop(b, d+1), Hash{}, near, d+1)
	if moved == nil {
		return u.retop(other, top) // the batch emptied b
	}
	nb := &branch{gen: u.gen, bit: uint8(d), top: uint8(top)}
	nb.setSkip(shared)
	nb.kids[side], nb.kids[1-side] = moved, other
	return nb
}

// build returns the subtree at depth top holding the pairs of kvs with a
// non-zero value plus extra, an existing leaf whose key is not in kvs and
// whose hash is extraHash.
func (u *updater) build(kvs []KV, extra *leaf, extraHash Hash, top int) node {
	// kvs is this call's own sorted copy and this range is used by no one
	// else, so deletions of keys that are not there can be dropped in place.
	kvs = slices.DeleteFunc(kvs, func(kv KV) bool { return kv.Value.IsZero() })
	u.added += len(kvs)
	n, _ := u.buildSorted(kvs, extra, extraHash, top)
	return n
}

// buildSorted returns the subtree and its hash if already known (a lone
// extra leaf), else the zero Hash.
func (u *updater) buildSorted(kvs []KV, extra *leaf, extraHash Hash, top int) (node, Hash) {
	switch {
	case len(kvs) == 0 && extra == nil:
		return nil, Hash{} // not extra: a nil *leaf is not a nil node
	case len(kvs) == 0:
		return extra, extraHash
	case len(kvs) == 1 && extra == nil:
		return &leaf{key: kvs[0].Key, value: kvs[0].Value}, Hash{}
	}
	lo, hi := kvs[0].Key, kvs[len(kvs)-1].Key
	if extra != nil {
		if compareKeys(extra.key, lo) < 0 {
			lo = extra.key
		}
		if compareKeys(extra.key, hi) > 0 {
			hi = extra.key
		}
	}
	// The first bit where the smallest and largest keys differ is the
	// first bit where any two differ.
	d := commonPrefix(lo, hi)
	s := searchBit(kvs, d)
	var extras [2]*leaf
	if extra != nil {
		extras[bitOf(extra.key, d)] = extra
	}
	b := &branch{gen: u.gen, bit: uint8(d), top: uint8(top)}
	b.setSkip(lo)
	if u.forks(kvs, s) {
		half := func(i int, part []KV) {
			sub := updater{gen: u.gen}
			b.kids[i], b.hashes[i] = sub.buildSorted(part, extras[i], extraHash, d+1)
			if b.hashes[i].IsZero() {
				b.hashes[i] = sub.hashOf(b.kids[i])
			}
		}
		var wg sync.WaitGroup
		wg.Go(func() { half(0, kvs[:s]) })
		half(1, kvs[s:])
		wg.Wait()
		return b, Hash{}
	}
	b.kids[0], b.hashes[0] = u.buildSorted(kvs[:s], extras[0], extraHash, d+1)
	b.kids[1], b.hashes[1] = u.buildSorted(kvs[s:], extras[1], extraHash, d+1)
	return b, Hash{}
}

// own returns b if this call made it, else a copy this call may edit.
func (u *updater) own(b *branch) *branch {
	if b.gen == u.gen {
		return b
	}
	c := *b
	c.gen = u.gen
	return &c
}

// retop moves n to depth top, for when the branch above it went away or a
// new one came in between. A leaf's hash does not depend on its depth; a
// branch's does, through the levels it skips.
func (u *updater) retop(n node, top int) node {
	if r, ok := n.(*ref); ok {
		b := r.load()
		if int(b.top) == top {
			return r
		}
		u.stale = append(u.stale, r.id)
		n = b
	}
	b, ok := n.(*branch)
	if !ok || int(b.top) == top {
		return n
	}
	nb := u.own(b)
	if top > int(nb.top) && int(nb.bit)-int(nb.top) <= maxSkip {
		nb.top = uint8(top)
		nb.skip &= 1<<(int(nb.bit)-top) - 1 // fewer levels skipped: drop the first
	} else {
		nb.top = uint8(top)
		nb.setSkip(anyKey(nb))
	}
	return nb
}

// hashOf returns the hash of n at its depth, computing every hash this
// call left out below it, children first. Nodes from older trees keep
// their hashes: a slot is zero only if this call put a new node there.
func (u *updater) hashOf(n node) Hash {
	switch x := resolve(n).(type) {
	case *leaf:
		return LeafHash(x.key, x.value)
	case *branch:
		if x.gen == u.gen {
			for i, h := range x.hashes {
				if h.IsZero() {
					x.hashes[i] = u.hashOf(x.kids[i])
				}
			}
		}
		return x.hashAt(int(x.top))
	}
	return Hash{}
}

// sortBatch returns a sorted copy of kvs with one pair per key, the last.
func sortBatch(kvs []KV, fork int) []KV {
	s := slices.Clone(kvs)
	// A whole state read back in key order, as at startup, needs no sort.
	if !slices.IsSortedFunc(s, compareKV) {
		sortKVs(s, fork)
	}
	for i := 1; i < len(s); i++ {
		if s[i].Key == s[i-1].Key {
			// Repeated keys are rare; only then pay for a stable sort to
			// know which pair came last.
			s = append(s[:0], kvs...)
			slices.SortStableFunc(s, compareKV)
			return lastOfRuns(s)
		}
	}
	return s
}

func compareKV(a, b KV) int { return compareKeys(a.Key, b.Key) }

// sortKVs sorts s by key. From fork pairs on it splits s by the first key
// bit and sorts the halves in two goroutines; keys are hashes, so the
// halves are even.
func sortKVs(s []KV, fork int) {
	if fork == 0 || len(s) < fork {
		slices.SortFunc(s, compareKV)
		return
	}
	i, j := 0, len(s)
	for i < j {
		switch {
		case s[i].Key[0] < 0x80:
			i++
		case s[j-1].Key[0] >= 0x80:
			j--
		default:
			s[i], s[j-1] = s[j-1], s[i]
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { slices.SortFunc(s[:i], compareKV) })
	slices.SortFunc(s[i:], compareKV)
	wg.Wait()
}

// lastOfRuns keeps the last pair of each run of equal keys, in place.
func lastOfRuns(s []KV) []KV {
	out := s[:0]
	for i, kv := range s {
		if i+1 < len(s) && s[i+1].Key == kv.Key {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// searchBit returns the index of the first pair of kvs whose key has bit d
// set. The keys are sorted and share their first d bits, so bit d is 0 up
// to that index and 1 from it on.
func searchBit(kvs []KV, d int) int {
	lo, hi := 0, len(kvs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bitOf(kvs[m].Key, d) == 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
