package merkle

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// mapNodes is a node store in a map, with a switch to make reads fail.
type mapNodes struct {
	mu    sync.Mutex
	recs  map[uint64][]byte
	next  uint64
	fails bool
}

func newMapNodes() *mapNodes { return &mapNodes{recs: map[uint64][]byte{}} }

var errReadFailed = errors.New("read failed")

func (m *mapNodes) ReadNode(id uint64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fails {
		return nil, errReadFailed
	}
	rec, ok := m.recs[id]
	if !ok {
		return nil, fmt.Errorf("node %d not found", id)
	}
	return rec, nil
}

func (m *mapNodes) alloc() uint64 { m.next++; return m.next }

func (m *mapNodes) put(id uint64, rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.recs[id]; dup {
		return fmt.Errorf("node %d written twice", id)
	}
	m.recs[id] = append([]byte(nil), rec...) // Persist reuses rec
	return nil
}

// reachable returns the ids of the stored nodes a persisted tree uses, read
// from the records themselves.
func (m *mapNodes) reachable(p PersistedSMT, into map[uint64]bool) error {
	var visit func(n node) error
	visit = func(n node) error {
		if b, ok := n.(*branch); ok { // in its parent's record
			return errors.Join(visit(b.kids[0]), visit(b.kids[1]))
		}
		r, ok := n.(*ref)
		if !ok {
			return nil
		}
		into[r.id] = true
		rec, ok := m.recs[r.id]
		if !ok {
			return fmt.Errorf("node %d is gone", r.id)
		}
		b, err := decodeBranch(rec, nil)
		if err != nil {
			return err
		}
		for _, k := range b.kids {
			if err := visit(k); err != nil {
				return err
			}
		}
		return nil
	}
	root, _, err := readKid(p.Root, nil)
	if err != nil {
		return err
	}
	return visit(root)
}

// A tree persisted and reloaded at random points, pruned of the nodes it
// reports stale once they are older than a few versions, answers every
// question exactly as the same tree kept in memory; every retained version
// stays readable; and the store holds nothing the retained versions do not
// use. Records span from one level to several, changing between reloads
// (a store reads records of any span), below a pin depth drawn small
// enough that loads go through the cache.
func TestSMTPersistMatchesMemory(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pool := genPool(t)
		store := newMapNodes()
		pin := rapid.IntRange(1, 8).Draw(t, "pin")
		newSource := func() *NodeSource {
			// A tiny cache, so that most loads read the store.
			s := NewNodeSource(store, 0, pin)
			s.SetRecordLevels(rapid.IntRange(1, 5).Draw(t, "record levels"))
			return s
		}
		src := newSource()
		mem, disk := NewSMT(), NewSMT()
		const retain = 3
		type version struct {
			p     PersistedSMT
			stale []uint64
			mem   *SMT
		}
		var versions []version
		for step := range rapid.IntRange(1, 12).Draw(t, "steps") {
			kvs := genBatch(pool, 24).Draw(t, "batch")
			mem = mem.Update(kvs)
			var err error
			if disk, err = disk.TryUpdate(kvs); err != nil {
				t.Fatalf("step %d: update: %v", step, err)
			}
			if disk.Root() != mem.Root() || disk.Len() != mem.Len() {
				t.Fatalf("step %d: root %s len %d, in memory %s len %d", step, disk.Root().Short(), disk.Len(), mem.Root().Short(), mem.Len())
			}
			if !rapid.Bool().Draw(t, "persist") {
				continue
			}
			var p PersistedSMT
			var stale []uint64
			if disk, p, stale, err = disk.Persist(src, store.alloc, store.put); err != nil {
				t.Fatalf("step %d: persist: %v", step, err)
			}
			if disk.Pending() != 0 {
				t.Fatalf("step %d: persisted tree still has %d stale nodes pending", step, disk.Pending())
			}
			versions = append(versions, version{p: p, stale: stale, mem: mem})
			// Prune what versions older than the retained ones replaced.
			if len(versions) > retain {
				for _, id := range versions[len(versions)-retain].stale {
					if _, ok := store.recs[id]; !ok {
						t.Fatalf("step %d: node %d reported stale twice", step, id)
					}
					delete(store.recs, id)
				}
			}
			live := map[uint64]bool{}
			first := max(0, len(versions)-retain)
			for _, v := range versions[first:] {
				if err := store.reachable(v.p, live); err != nil {
					t.Fatalf("step %d: a retained version is damaged: %v", step, err)
				}
			}
			if got := slices.Sorted(maps.Keys(store.recs)); !slices.Equal(got, slices.Sorted(maps.Keys(live))) {
				t.Fatalf("step %d: store holds %d nodes, retained versions use %d", step, len(got), len(live))
			}
			if rapid.Bool().Draw(t, "reload") {
				// A fresh source: nothing cached.
				src = newSource()
				if disk, err = LoadSMT(p, src); err != nil {
					t.Fatalf("step %d: load: %v", step, err)
				}
			}
			// Every retained version, loaded from the store, matches memory.
			for _, v := range versions[first:] {
				old, err := LoadSMT(v.p, src)
				if err != nil {
					t.Fatalf("step %d: load retained version: %v", step, err)
				}
				sameTree(t, old, v.mem, pool)
			}
		}
		sameTree(t, disk, mem, pool)
	})
}

// sameTree checks that a stored tree gives the answers of one in memory.
func sameTree(t interface{ Fatalf(string, ...any) }, disk, mem *SMT, keys []Hash) {
	if disk.Root() != mem.Root() || disk.Len() != mem.Len() {
		t.Fatalf("root %s len %d, in memory %s len %d", disk.Root().Short(), disk.Len(), mem.Root().Short(), mem.Len())
	}
	for _, k := range append(keys, Hash{0xff}, Hash{}) {
		v, ok, err := disk.TryGet(k)
		if err != nil {
			t.Fatalf("get %s: %v", k.Short(), err)
		}
		mv, mok := mem.Get(k)
		if v != mv || ok != mok {
			t.Fatalf("get %s: %s %v, in memory %s %v", k.Short(), v.Short(), ok, mv.Short(), mok)
		}
		p, err := disk.TryProve(k)
		if err != nil {
			t.Fatalf("prove %s: %v", k.Short(), err)
		}
		if mp := mem.Prove(k); !slices.Equal(p.Siblings, mp.Siblings) || p.HasOther != mp.HasOther || p.OtherKey != mp.OtherKey {
			t.Fatalf("prove %s: proof differs from the one in memory", k.Short())
		}
		if !VerifySMT(disk.Root(), k, v, p) {
			t.Fatalf("prove %s: proof does not verify", k.Short())
		}
		lp, lv, lok, err := disk.TryLookup(k)
		if err != nil || lv != v || lok != ok || !slices.Equal(lp.Siblings, p.Siblings) {
			t.Fatalf("lookup %s: %s %v (%v), get and prove say %s %v", k.Short(), lv.Short(), lok, err, v.Short(), ok)
		}
	}
	got := map[Hash]Hash{}
	if err := disk.TryWalk(func(k, v Hash) bool { got[k] = v; return true }); err != nil {
		t.Fatalf("walk: %v", err)
	}
	if !maps.Equal(got, contents(mem)) {
		t.Fatalf("walk gives %d keys, in memory %d", len(got), mem.Len())
	}
}

// Batches large enough to fork the update between goroutines, on a tree
// whose nodes are all stored: the same roots as in memory, and a failed read
// in either half comes back as an error rather than a crash.
func TestSMTPersistLargeBatches(t *testing.T) {
	store := newMapNodes()
	src := NewNodeSource(store, 2<<20, 0)
	mem, disk := NewSMT(), NewSMT()
	for v := range 6 {
		kvs := randomKVs(v, 3000)
		// Rewrite some keys of the previous batches too.
		if v > 0 {
			kvs = append(kvs, randomKVs(v-1, 500)...)
			for i := range 500 {
				kvs[len(kvs)-1-i].Value = hashOfInt(v*7 + i)
			}
		}
		mem = mem.Update(kvs)
		var err error
		if disk, err = disk.TryUpdate(kvs); err != nil {
			t.Fatal(err)
		}
		if disk, _, _, err = disk.Persist(src, store.alloc, store.put); err != nil {
			t.Fatal(err)
		}
		if disk.Root() != mem.Root() {
			t.Fatalf("version %d: root %s, in memory %s", v, disk.Root().Short(), mem.Root().Short())
		}
	}
	if src.CachedBytes() > 2<<20 {
		t.Fatalf("cache holds %d bytes, bound is %d", src.CachedBytes(), 2<<20)
	}
	cold := NewNodeSource(store, 0, 0)
	p := func() PersistedSMT {
		_, p, _, err := disk.Persist(src, store.alloc, store.put)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}()
	tree, err := LoadSMT(p, cold)
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.fails = true
	store.mu.Unlock()
	if _, err := tree.TryUpdate(randomKVs(99, 2000)); !errors.Is(err, errReadFailed) {
		t.Fatalf("update over a failing store: %v, want the read error", err)
	}
	if _, _, err := tree.TryGet(hashOfInt(1)); !errors.Is(err, errReadFailed) {
		t.Fatalf("get over a failing store: %v, want the read error", err)
	}
	if _, err := tree.TryProve(hashOfInt(1)); !errors.Is(err, errReadFailed) {
		t.Fatalf("prove over a failing store: %v, want the read error", err)
	}
}

// A node record that is cut short or carries an unknown child kind is an
// error naming the node, not a crash.
func TestSMTBadNodeRecord(t *testing.T) {
	store := newMapNodes()
	src := NewNodeSource(store, 0, 0)
	tree := BuildSMT(randomKVs(1, 50))
	_, p, _, err := tree.Persist(src, store.alloc, store.put)
	if err != nil {
		t.Fatal(err)
	}
	for id, rec := range store.recs {
		store.recs[id] = rec[:len(rec)-3]
	}
	loaded, err := LoadSMT(p, NewNodeSource(store, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := loaded.TryGet(hashOfInt(1)); !errors.Is(err, ErrBadNode) {
		t.Fatalf("get over cut records: %v, want ErrBadNode", err)
	}
}

// TestSMTLoadTop: after LoadTop, every branch above the source's pin depth
// is in memory: lookups of a tree small enough to be all pinned read nothing
// more, even with the store failing, while a source pinning fewer levels
// still reads; a stop ends the walk early; a failed read is returned.
func TestSMTLoadTop(t *testing.T) {
	store := newMapNodes()
	src := NewNodeSource(store, 1<<20, 0)
	kvs := randomKVs(1, 2000) // about 11 levels: all pinned
	tree, _, _, err := NewSMT().Update(kvs).Persist(src, store.alloc, store.put)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _, err := tree.Persist(src, store.alloc, store.put)
	if err != nil {
		t.Fatal(err)
	}
	load := func() *SMT {
		tr, err := LoadSMT(p, NewNodeSource(store, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}

	stopped := load()
	asked := 0
	if err := stopped.LoadTop(func() bool { asked++; return asked > 10 }); err != nil {
		t.Fatal(err)
	}
	if asked != 11 {
		t.Fatalf("the walk asked stop %d times after it said stop at the 11th", asked)
	}

	full := load()
	if err := full.LoadTop(func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	shallow, err := LoadSMT(p, NewNodeSource(store, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	if err := shallow.LoadTop(func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.fails = true
	store.mu.Unlock()
	for _, kv := range kvs {
		if v, ok, err := full.TryGet(kv.Key); err != nil || !ok || v != kv.Value {
			t.Fatalf("get %s after LoadTop over a failing store: %s %v %v", kv.Key.Short(), v.Short(), ok, err)
		}
	}
	readFailed := 0
	for _, kv := range kvs {
		if _, _, err := shallow.TryGet(kv.Key); errors.Is(err, errReadFailed) {
			readFailed++
		}
	}
	if readFailed == 0 {
		t.Fatal("a source pinning 4 levels of an 11-level tree read nothing below them")
	}
	if err := load().LoadTop(func() bool { return false }); !errors.Is(err, errReadFailed) {
		t.Fatalf("LoadTop over a failing store: %v, want the read error", err)
	}
}

// TestPinnedBytes: the bound on the pinned levels' heap doubles with each
// level, and a level count out of range is brought within it.
func TestPinnedBytes(t *testing.T) {
	if PinnedBytes(0) != PinnedBytes(DefaultPinLevels) {
		t.Fatalf("0 levels: %d, want the default's %d", PinnedBytes(0), PinnedBytes(DefaultPinLevels))
	}
	if PinnedBytes(MaxPinLevels+8) != PinnedBytes(MaxPinLevels) {
		t.Fatal("levels past the maximum not held to it")
	}
	if a, b := PinnedBytes(10), PinnedBytes(11); b != 2*a+pinnedNodeBytes {
		t.Fatalf("11 levels %d, 10 levels %d: want one level's doubling", b, a)
	}
}

// TestSMTRecordLevels: records spanning four levels hold the same tree in
// fewer records than one a branch, each record's branches within its band;
// an update writes fewer records and reports as stale exactly the records it
// replaced; and a store written with one span reads back under another.
func TestSMTRecordLevels(t *testing.T) {
	kvs := randomKVs(7, 3000)
	more := randomKVs(8, 40)
	type run struct {
		store          *mapNodes
		first, written int
		stale          []uint64
		p              PersistedSMT
	}
	persist := func(levels int) run {
		r := run{store: newMapNodes()}
		src := NewNodeSource(r.store, 0, 6)
		src.SetRecordLevels(levels)
		tree, _, _, err := BuildSMT(kvs).Persist(src, r.store.alloc, r.store.put)
		if err != nil {
			t.Fatal(err)
		}
		r.first = len(r.store.recs)
		next, err := tree.TryUpdate(more)
		if err != nil {
			t.Fatal(err)
		}
		_, r.p, r.stale, err = next.Persist(src, r.store.alloc, r.store.put)
		if err != nil {
			t.Fatal(err)
		}
		r.written = len(r.store.recs) - r.first
		return r
	}
	one, four := persist(1), persist(4)
	if four.first*2 > one.first || four.written*2 > one.written {
		t.Fatalf("records of four levels: %d for the tree, %d for the update; one level: %d and %d", four.first, four.written, one.first, one.written)
	}
	for _, r := range []run{one, four} {
		for _, id := range r.stale {
			if id > uint64(r.first) {
				t.Fatalf("stale record %d was written by the update itself", id)
			}
		}
		live := map[uint64]bool{}
		if err := r.store.reachable(r.p, live); err != nil {
			t.Fatal(err)
		}
		if want := len(r.store.recs) - len(r.stale); len(live) != want {
			t.Fatalf("update left %d records reachable, want %d written less %d stale", len(live), want, len(r.stale))
		}
	}
	// Every branch of a record lies in its root's band: between the pin
	// depth (6) and the band's end.
	limitOf := NewNodeSource(nil, 0, 6)
	limitOf.SetRecordLevels(4)
	for id, rec := range four.store.recs {
		b, err := decodeBranch(rec, nil)
		if err != nil {
			t.Fatalf("record %d: %v", id, err)
		}
		limit := limitOf.recordLimit(b.bit)
		var check func(x *branch)
		check = func(x *branch) {
			for _, k := range x.kids {
				if kb, ok := k.(*branch); ok {
					if int(kb.bit) >= limit || (b.bit < 6) != (kb.bit < 6) {
						t.Fatalf("record %d at depth %d holds a branch at depth %d (band ends at %d)", id, b.bit, kb.bit, limit)
					}
					check(kb)
				}
			}
		}
		check(b)
	}
	all := BuildSMT(kvs).Update(more)
	for _, levels := range []int{1, 4, 8} {
		src := NewNodeSource(four.store, 0, 6)
		src.SetRecordLevels(levels)
		tree, err := LoadSMT(four.p, src)
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]Hash, 0, len(kvs))
		for _, kv := range kvs[:200] {
			keys = append(keys, kv.Key)
		}
		sameTree(t, tree, all, keys)
	}
}

// TestDecodeInlineBranch: a branch in its parent's record must start right
// below the parent's split; one that does not is malformed, not followed.
func TestDecodeInlineBranch(t *testing.T) {
	h := Hash{1}
	leafKid := append([]byte{kidLeaf}, make([]byte, 2*Size)...)
	enc := func(bit, top byte, kids ...[]byte) []byte {
		out := []byte{bit, top, 0, 0, 0, 0}
		out = append(out, h[:]...)
		out = append(out, h[:]...)
		for _, k := range kids {
			out = append(out, k...)
		}
		return out
	}
	good := enc(3, 0, append([]byte{kidInline}, enc(5, 4, leafKid, leafKid)...), leafKid)
	if b, err := decodeBranch(good, nil); err != nil {
		t.Fatalf("good record: %v", err)
	} else if kb, ok := b.kids[0].(*branch); !ok || kb.bit != 5 || kb.top != 4 {
		t.Fatalf("good record: child %#v", b.kids[0])
	}
	for name, rec := range map[string][]byte{
		"child above its parent": enc(3, 0, append([]byte{kidInline}, enc(3, 3, leafKid, leafKid)...), leafKid),
		"child skips a level":    enc(3, 0, append([]byte{kidInline}, enc(6, 5, leafKid, leafKid)...), leafKid),
		"child truncated":        enc(3, 0, []byte{kidInline, 5}),
		"trailing bytes":         append(good, 0),
	} {
		if _, err := decodeBranch(rec, nil); !errors.Is(err, ErrBadNode) {
			t.Errorf("%s: %v, want ErrBadNode", name, err)
		}
	}
}
