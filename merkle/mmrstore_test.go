package merkle

import (
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"
)

// mapStore is an MMRStore over a map, counting what it is asked.
type mapStore struct {
	mu    sync.Mutex
	nodes map[uint64]Hash
	calls int
	read  []uint64 // every position asked, in order
}

func newMapStore() *mapStore { return &mapStore{nodes: map[uint64]Hash{}} }

func (s *mapStore) ReadMMRNodes(pos []uint64, out []Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.read = append(s.read, pos...)
	if len(out) != len(pos) {
		return fmt.Errorf("read %d MMR nodes into %d", len(pos), len(out))
	}
	for i, p := range pos {
		h, ok := s.nodes[p]
		if !ok {
			return fmt.Errorf("read MMR node %d: not in store", p)
		}
		out[i] = h
	}
	return nil
}

func (s *mapStore) write(first uint64, nodes []Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range nodes {
		s.nodes[first+uint64(i)] = h
	}
}

func (s *mapStore) counts() (calls, positions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, len(s.read)
}

func (s *mapStore) size() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.nodes))
}

var errStoreBroken = errors.New("store broken")

type failingStore struct{}

func (failingStore) ReadMMRNodes([]uint64, []Hash) error { return errStoreBroken }

// storeOf returns a store holding every node of m, and m loaded from it.
func storeOf(t testing.TB, m *MMR) (*mapStore, *MMR) {
	t.Helper()
	s := newMapStore()
	s.write(m.Unpersisted())
	d, err := LoadMMR(m.Leaves(), s)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

func memMMR(n int) *MMR {
	m := &MMR{}
	for i := range n {
		m = m.Append(hashOfInt(i))
	}
	return m
}

func TestChunkOfIsContiguous(t *testing.T) {
	c, off := chunkOf(0)
	if c != 0 || off != 0 {
		t.Fatalf("node 0 at chunk %d offset %d", c, off)
	}
	for i := uint64(1); i < 8*chunkLen; i++ {
		wc, woff := c, off+1
		if woff == uint64(chunkSize(c)) {
			wc, woff = c+1, 0
		}
		c, off = chunkOf(i)
		if c != wc || off != woff {
			t.Fatalf("node %d at chunk %d offset %d, want %d %d", i, c, off, wc, woff)
		}
	}
	if chunkSize(0) != 1<<minChunkBits || chunkSize(c) != chunkLen {
		t.Fatalf("chunk sizes %d .. %d", chunkSize(0), chunkSize(c))
	}
}

// TestMMRDiskBackedMatchesMemory appends random leaves to a disk-backed MMR,
// persisting and reloading it at random points, and checks it against an
// in-memory MMR of the same leaves.
func TestMMRDiskBackedMatchesMemory(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		store := newMapStore()
		mem, disk := &MMR{}, &MMR{}
		var leaves []Hash
		var persistedLeaves uint64
		values := rapid.IntRange(1, 1<<20).Draw(t, "values") // few values make repeats
		dropEvery := rapid.IntRange(0, 7).Draw(t, "dropEvery")
		type snapshot struct {
			m    *MMR
			root Hash
		}
		var snaps []snapshot

		check := func() {
			n := uint64(len(leaves))
			if disk.Leaves() != n || mem.Leaves() != n {
				t.Fatalf("Leaves = %d, in memory %d, want %d", disk.Leaves(), mem.Leaves(), n)
			}
			root := disk.Root()
			if root != mem.Root() || !slices.Equal(disk.Peaks(), mem.Peaks()) {
				t.Fatalf("%d leaves: root or peaks differ from the in-memory MMR", n)
			}
			first, nodes := disk.Unpersisted()
			_, all := mem.Unpersisted()
			if first != store.size() || !slices.Equal(nodes, all[first:]) {
				t.Fatalf("%d leaves: Unpersisted from %d, %d nodes; store has %d of %d", n, first, len(nodes), store.size(), len(all))
			}
			if n == 0 {
				return
			}
			picks := []uint64{0, n - 1, rapid.Uint64Range(0, n-1).Draw(t, "leaf")}
			if persistedLeaves > 0 {
				picks = append(picks, persistedLeaves-1) // the last one wholly in the store
			}
			if persistedLeaves < n {
				picks = append(picks, persistedLeaves)
			}
			for _, i := range picks {
				got, err := disk.LeafAt(i)
				if err != nil || got != leaves[i] || disk.Leaf(i) != leaves[i] {
					t.Fatalf("leaf %d of %d wrong (%v)", i, n, err)
				}
				p, err := disk.Prove(i)
				want, _ := mem.Prove(i)
				if err != nil || !reflect.DeepEqual(p, want) {
					t.Fatalf("proof of leaf %d of %d differs from the in-memory one (%v)", i, n, err)
				}
				if !VerifyMMR(root, n, i, leaves[i], p) {
					t.Fatalf("proof of leaf %d of %d does not verify", i, n)
				}
			}
		}

		steps := rapid.IntRange(1, 25).Draw(t, "steps")
		for range steps {
			switch action := rapid.IntRange(0, 4).Draw(t, "action"); action {
			case 0, 1: // appends are the common case
				for range rapid.IntRange(1, 1500).Draw(t, "appends") {
					if dropEvery > 0 && len(leaves)%dropEvery == 0 {
						_ = disk.Append(Sum([]byte("dropped candidate")))
					}
					leaf := hashOfInt(len(leaves) % values)
					leaves = append(leaves, leaf)
					mem, disk = mem.Append(leaf), disk.Append(leaf)
				}
			case 2: // persist, as a store does after each block
				store.write(disk.Unpersisted())
				disk = disk.Persisted(store)
				persistedLeaves = disk.Leaves()
				if first, nodes := disk.Unpersisted(); first != disk.size() || nodes != nil || disk.chunks != nil {
					t.Fatalf("after Persisted: Unpersisted from %d, %d nodes, %d chunks held", first, len(nodes), len(disk.chunks))
				}
			case 3: // reopen
				store.write(disk.Unpersisted())
				calls, _ := store.counts()
				var err error
				if disk, err = LoadMMR(uint64(len(leaves)), store); err != nil {
					t.Fatal(err)
				}
				persistedLeaves = disk.Leaves()
				if after, _ := store.counts(); after-calls > 1 {
					t.Fatalf("LoadMMR made %d reads", after-calls)
				}
			case 4:
				snaps = append(snaps, snapshot{disk, disk.Root()})
			}
			check()
		}
		for _, s := range snaps {
			n := s.m.Leaves()
			if s.m.Root() != s.root || s.m.Root() != refMMRRoot(leaves[:n]) {
				t.Fatalf("MMR of %d leaves changed", n)
			}
			if n == 0 {
				continue
			}
			i := rapid.Uint64Range(0, n-1).Draw(t, "old leaf")
			p, err := s.m.Prove(i)
			if err != nil || !VerifyMMR(s.root, n, i, leaves[i], p) || s.m.Leaf(i) != leaves[i] {
				t.Fatalf("MMR of %d leaves: leaf %d or its proof wrong (%v)", n, i, err)
			}
		}
	})
}

// TestLoadMMRReadsOnlyPeaks checks that opening reads the peaks in one call
// and that Root, Peaks and Append never read the store.
func TestLoadMMRReadsOnlyPeaks(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 5, 8, 23, 1000, 4095, 4096} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			mem := memMMR(n)
			store, disk := storeOf(t, mem)
			calls, _ := store.counts()
			// A mountain ending after c leaves has its peak last of the
			// first 2c - popcount(c) nodes.
			var want []uint64
			var c uint64
			for height := 63; height >= 0; height-- {
				if uint64(n)&(1<<height) != 0 {
					c += 1 << height
					want = append(want, 2*c-uint64(bits.OnesCount64(c))-1)
				}
			}
			if wantCalls := min(n, 1); calls != wantCalls || !slices.Equal(store.read, want) {
				t.Fatalf("LoadMMR made %d calls reading %v, want %d reading %v", calls, store.read, wantCalls, want)
			}
			if disk.Root() != mem.Root() || !slices.Equal(disk.Peaks(), mem.Peaks()) {
				t.Fatal("loaded root or peaks differ")
			}
			for i := range chunkLen + 5 {
				mem, disk = mem.Append(hashOfInt(n+i)), disk.Append(hashOfInt(n+i))
				if disk.Root() != mem.Root() || !slices.Equal(disk.Peaks(), mem.Peaks()) {
					t.Fatalf("after %d appends: root or peaks differ", i+1)
				}
			}
			if after, _ := store.counts(); after != calls {
				t.Fatalf("Root, Peaks and Append made %d reads", after-calls)
			}
		})
	}
}

// TestMMRProveReadsOnce checks that a proof costs one read of just the
// siblings in the store, and none when they are all in memory.
func TestMMRProveReadsOnce(t *testing.T) {
	mem := memMMR(1000)
	store, disk := storeOf(t, mem)
	for range 30 { // a tail in memory, merging with the stored mountains
		mem, disk = mem.Append(hashOfInt(int(mem.Leaves()))), disk.Append(hashOfInt(int(mem.Leaves())))
	}
	for i := range disk.Leaves() {
		calls, read := store.counts()
		p, err := disk.Prove(i)
		want, _ := mem.Prove(i)
		if err != nil || !reflect.DeepEqual(p, want) {
			t.Fatalf("proof of leaf %d differs (%v)", i, err)
		}
		height, _, _ := mountainOf(disk.Leaves(), i)
		var stored int
		peak := leafPos(i) // walk up: the sibling of each node, then its parent
		for h := range height {
			if (i>>h)&1 == 0 {
				if peak+subtreeSize(h) < disk.base {
					stored++
				}
				peak += subtreeSize(h) + 1
			} else {
				if peak-subtreeSize(h) < disk.base {
					stored++
				}
				peak++
			}
		}
		afterCalls, afterRead := store.counts()
		if wantCalls := min(stored, 1); afterCalls-calls != wantCalls || afterRead-read != stored {
			t.Fatalf("leaf %d: %d calls reading %d nodes, want %d reading %d", i, afterCalls-calls, afterRead-read, wantCalls, stored)
		}
	}
}

func TestMMRUnpersisted(t *testing.T) {
	if first, nodes := (&MMR{}).Unpersisted(); first != 0 || nodes != nil {
		t.Fatalf("empty MMR: Unpersisted from %d, %d nodes", first, len(nodes))
	}
	mem := memMMR(2*chunkLen + 3)
	first, all := mem.Unpersisted()
	if first != 0 || uint64(len(all)) != mem.size() || all[leafPos(7)] != hashOfInt(7) {
		t.Fatalf("in memory: Unpersisted from %d, %d nodes of %d", first, len(all), mem.size())
	}
	store := newMapStore()
	store.write(first, all)
	disk := mem.Persisted(store)
	if first, nodes := disk.Unpersisted(); first != mem.size() || nodes != nil {
		t.Fatalf("after Persisted: Unpersisted from %d, %d nodes", first, len(nodes))
	}
	next := disk.Append(hashOfInt(-1)).Append(hashOfInt(-2))
	_, want := mem.Append(hashOfInt(-1)).Append(hashOfInt(-2)).Unpersisted()
	first, nodes := next.Unpersisted()
	if first != mem.size() || !slices.Equal(nodes, want[first:]) {
		t.Fatalf("after two appends: Unpersisted from %d, %d nodes", first, len(nodes))
	}
	nodes[0][0] ^= 1 // a copy: the MMR must not see it
	if next.Leaf(next.Leaves()-2) != hashOfInt(-1) {
		t.Fatal("changing what Unpersisted returned changed the MMR")
	}
}

func TestMMRFailingStore(t *testing.T) {
	if _, err := LoadMMR(5, failingStore{}); !errors.Is(err, errStoreBroken) {
		t.Fatalf("LoadMMR: err = %v", err)
	}
	if m, err := LoadMMR(0, failingStore{}); err != nil || !m.Root().IsZero() {
		t.Fatalf("LoadMMR of no leaves: %v", err)
	}
	if _, err := LoadMMR(1<<63, newMapStore()); err == nil {
		t.Fatal("LoadMMR of 2^63 leaves: no error")
	}
	mem := memMMR(23) // mountains of 16, 4, 2 and 1 leaves
	disk := mem.Persisted(failingStore{})
	if disk.Root() != mem.Root() {
		t.Fatal("root differs")
	}
	if _, err := disk.Prove(5); !errors.Is(err, errStoreBroken) || !strings.Contains(err.Error(), "prove MMR leaf 5") {
		t.Fatalf("Prove(5): err = %v", err)
	}
	if _, err := disk.LeafAt(5); !errors.Is(err, errStoreBroken) || !strings.Contains(err.Error(), "leaf 5") {
		t.Fatalf("LeafAt(5): err = %v", err)
	}
	if _, err := disk.LeafAt(23); !errors.Is(err, ErrLeafOutOfRange) {
		t.Fatalf("LeafAt(23): err = %v", err)
	}
	// The mountain of one leaf is its peak, held in memory.
	if h, err := disk.LeafAt(22); err != nil || h != hashOfInt(22) || disk.Leaf(22) != hashOfInt(22) {
		t.Fatalf("LeafAt(22): %v", err)
	}
	if p, err := disk.Prove(22); err != nil || !VerifyMMR(disk.Root(), 23, 22, hashOfInt(22), p) {
		t.Fatalf("Prove(22): %v", err)
	}
	// Leaves appended since hold their siblings in memory, up to the old
	// peaks they merge with.
	grown := disk.Append(hashOfInt(23)).Append(hashOfInt(24)).Append(hashOfInt(25))
	if p, err := grown.Prove(24); err != nil || !VerifyMMR(grown.Root(), 26, 24, hashOfInt(24), p) {
		t.Fatalf("Prove(24) after appends: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "leaf 5") {
				t.Fatalf("Leaf(5) on a failing store: recovered %v", r)
			}
		}()
		disk.Leaf(5)
	}()
}

// TestMMRDiskBackedConcurrentReaders reads a disk-backed MMR with nodes in
// memory past its boundary while another goroutine appends to it (into the
// chunk they share) and persists.
func TestMMRDiskBackedConcurrentReaders(t *testing.T) {
	store, base := storeOf(t, memMMR(1000))
	for i := range 300 {
		base = base.Append(hashOfInt(1000 + i))
	}
	root, n := base.Root(), base.Leaves()
	var wg sync.WaitGroup
	var stop atomic.Bool
	var bad atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for i := uint64(r); !stop.Load(); i = (i + 7) % n {
				p, err := base.Prove(i)
				leaf, lerr := base.LeafAt(i)
				if err != nil || lerr != nil || base.Root() != root || !VerifyMMR(root, n, i, leaf, p) || leaf != hashOfInt(int(i)) {
					bad.Add(1)
					return
				}
			}
		})
	}
	m := base
	for i := range 3 * chunkLen {
		m = m.Append(hashOfInt(int(n) + i))
		if i%100 == 99 {
			store.write(m.Unpersisted())
			m = m.Persisted(store)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 || base.Root() != root {
		t.Fatal("readers saw the MMR change")
	}
}

// sliceStore is an MMRStore over a slice, so that the benchmarks measure the
// MMR rather than a map.
type sliceStore struct{ nodes []Hash }

func (s *sliceStore) ReadMMRNodes(pos []uint64, out []Hash) error {
	for i, p := range pos {
		if p >= uint64(len(s.nodes)) {
			return fmt.Errorf("read MMR node %d: past the %d stored", p, len(s.nodes))
		}
		out[i] = s.nodes[p]
	}
	return nil
}

// BenchmarkMMRDiskBacked works on an MMR of a million leaves loaded from a
// store, next to the same MMR in memory.
func BenchmarkMMRDiskBacked(b *testing.B) {
	const n = 1_000_000
	mem := memMMR(n)
	_, all := mem.Unpersisted()
	store := &sliceStore{nodes: all}
	disk, err := LoadMMR(n, store)
	if err != nil {
		b.Fatal(err)
	}
	leaf := Sum([]byte("block"))
	b.Run("Prove/memory", func(b *testing.B) {
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			if _, err := mem.Prove(i); err != nil {
				b.Fatal(err)
			}
			i = (i + 7919) % n
		}
	})
	b.Run("Prove/disk", func(b *testing.B) {
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			if _, err := disk.Prove(i); err != nil {
				b.Fatal(err)
			}
			i = (i + 7919) % n
		}
	})
	b.Run("Append", func(b *testing.B) {
		b.ReportAllocs()
		m := disk
		for b.Loop() {
			m = m.Append(leaf)
		}
	})
	// A store's cycle per block: append, write the new nodes, persist.
	b.Run("AppendPersist", func(b *testing.B) {
		b.ReportAllocs()
		s := &sliceStore{nodes: slices.Clip(all)}
		m, err := LoadMMR(n, s)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			m = m.Append(leaf)
			_, nodes := m.Unpersisted()
			s.nodes = append(s.nodes, nodes...)
			m = m.Persisted(s)
		}
	})
}

// TestMMRSince: an MMR grown from one still to be written, and that one
// from a stored MMR, writes each part once: Since gives the nodes past the
// stored one's, and the store written part by part loads the same MMR.
func TestMMRSince(t *testing.T) {
	leaf := func(i int) Hash { return Sum(fmt.Appendf(nil, "leaf %d", i)) }
	m := &MMR{}
	for i := range 5 {
		m = m.Append(leaf(i))
	}
	s, stored := storeOf(t, m)
	a := stored
	for i := 5; i < 8; i++ {
		a = a.Append(leaf(i))
	}
	b := a
	for i := 8; i < 12; i++ {
		b = b.Append(leaf(i))
	}
	if first, nodes := a.Since(stored); first != stored.size() || uint64(len(nodes)) != a.size()-stored.size() {
		t.Fatalf("a since stored: from %d, %d nodes; want from %d, %d", first, len(nodes), stored.size(), a.size()-stored.size())
	}
	s.write(a.Since(stored))
	first, nodes := b.Since(a)
	if first != a.size() || uint64(len(nodes)) != b.size()-a.size() {
		t.Fatalf("b since a: from %d, %d nodes; want from %d, %d", first, len(nodes), a.size(), b.size()-a.size())
	}
	if f, all := b.Since(nil); f != stored.size() || len(all) != len(nodes)+int(a.size()-stored.size()) {
		t.Fatalf("b since nil: from %d, %d nodes: not all it holds", f, len(all))
	}
	s.write(first, nodes)
	got, err := LoadMMR(b.Leaves(), s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Root() != b.Root() {
		t.Fatal("the MMR written part by part does not load as the one grown")
	}
	for i := range 12 {
		if h, err := got.LeafAt(uint64(i)); err != nil || h != leaf(i) {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
}
