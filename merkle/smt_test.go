package merkle

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func key(b0, b31 byte) Hash {
	var k Hash
	k[0], k[31] = b0, b31
	return k
}

func val(b byte) Hash { return Hash{b} }

func TestSMTTable(t *testing.T) {
	a, b, c := key(0x00, 0), key(0x80, 0), key(0x00, 1) // a and c split at bit 255
	// p, q differ in bit 255 below a 0x46 prefix; r leaves it at bit 38,
	// exactly 32 levels below where 0x46 parts from 0x40.
	p, q, r, s := key(0x46, 0), key(0x46, 1), key(0x46, 0), key(0x40, 0)
	r[4] = 0x02
	tests := []struct {
		name    string
		batches [][]KV
		want    map[Hash]Hash
	}{
		{"empty", nil, map[Hash]Hash{}},
		{"empty batch", [][]KV{{}}, map[Hash]Hash{}},
		{"one key", [][]KV{{{a, val(1)}}}, map[Hash]Hash{a: val(1)}},
		{"split at bit 0", [][]KV{{{a, val(1)}, {b, val(2)}}}, map[Hash]Hash{a: val(1), b: val(2)}},
		{"split at bit 255", [][]KV{{{c, val(3)}, {a, val(1)}}}, map[Hash]Hash{a: val(1), c: val(3)}},
		{"three keys", [][]KV{{{a, val(1)}}, {{b, val(2)}, {c, val(3)}}}, map[Hash]Hash{a: val(1), b: val(2), c: val(3)}},
		{"overwrite", [][]KV{{{a, val(1)}, {b, val(2)}}, {{a, val(9)}}}, map[Hash]Hash{a: val(9), b: val(2)}},
		{"delete to one leaf", [][]KV{{{a, val(1)}, {b, val(2)}, {c, val(3)}}, {{b, Hash{}}, {c, Hash{}}}}, map[Hash]Hash{a: val(1)}},
		{"delete deep sibling collapses", [][]KV{{{a, val(1)}, {b, val(2)}, {c, val(3)}}, {{c, Hash{}}}}, map[Hash]Hash{a: val(1), b: val(2)}},
		{"delete all", [][]KV{{{a, val(1)}, {b, val(2)}}, {{a, Hash{}}, {b, Hash{}}}}, map[Hash]Hash{}},
		{"replace a deep pair by a key outside it", [][]KV{{{a, val(1)}, {c, val(3)}}, {{a, Hash{}}, {b, val(2)}, {c, Hash{}}}}, map[Hash]Hash{b: val(2)}},
		{"split above a pair that collapses", [][]KV{{{p, val(1)}, {q, val(1)}, {s, val(1)}, {a, val(1)}}, {{p, Hash{}}, {r, val(2)}}}, map[Hash]Hash{q: val(1), r: val(2), s: val(1), a: val(1)}},
		{"delete absent", [][]KV{{{a, val(1)}}, {{b, Hash{}}, {c, Hash{}}}}, map[Hash]Hash{a: val(1)}},
		{"insert and delete in one batch", [][]KV{{{a, val(1)}, {b, val(2)}, {b, Hash{}}}}, map[Hash]Hash{a: val(1)}},
		{"last duplicate wins", [][]KV{{{a, val(1)}, {a, val(2)}, {b, Hash{}}, {b, val(5)}}}, map[Hash]Hash{a: val(2), b: val(5)}},
		{"duplicate ending in delete", [][]KV{{{a, val(1)}}, {{a, val(2)}, {a, Hash{}}}}, map[Hash]Hash{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewSMT()
			for _, batch := range tt.batches {
				tr = tr.Update(batch)
				checkShape(t, tr)
			}
			if got := contents(tr); !maps.Equal(got, tt.want) {
				t.Fatalf("contents %v, want %v", got, tt.want)
			}
			if got, want := tr.Root(), refRoot(tt.want); got != want {
				t.Fatalf("root %s, want %s", got.Short(), want.Short())
			}
			if tr.Len() != len(tt.want) {
				t.Fatalf("Len %d, want %d", tr.Len(), len(tt.want))
			}
		})
	}
}

func TestSMTZeroValueIsEmpty(t *testing.T) {
	var tr SMT
	if !tr.Root().IsZero() || tr.Len() != 0 {
		t.Fatal("zero SMT is not empty")
	}
	if _, ok := tr.Get(key(1, 1)); ok {
		t.Fatal("Get on empty tree found a key")
	}
	if got := tr.Update([]KV{{key(1, 1), val(1)}}).Root(); got != LeafHash(key(1, 1), val(1)) {
		t.Fatal("one-key root is not its leaf hash")
	}
}

// TestSMTMatchesReference drives random batches of inserts, rewrites and
// deletes and compares every tree with the recursive definition.
func TestSMTMatchesReference(t *testing.T) {
	// Batches here are small; forking from 2 keys on exercises the
	// two-goroutine path on the same cases.
	for _, fork := range []int{0, 2} {
		t.Run(fmt.Sprintf("fork=%d", fork), func(t *testing.T) {
			setFork(t, fork)
			rapid.Check(t, checkAgainstReference)
		})
	}
}

func checkAgainstReference(t *rapid.T) {
	pool := genPool(t)
	model := map[Hash]Hash{}
	tr := NewSMT()
	for range rapid.IntRange(1, 6).Draw(t, "batches") {
		batch := genBatch(pool, 40).Draw(t, "batch")
		oldRoot, oldContents := tr.Root(), contents(tr)

		next := tr.Update(batch)
		applyRef(model, batch)

		if tr.Root() != oldRoot || !maps.Equal(contents(tr), oldContents) {
			t.Fatal("Update changed the old tree")
		}
		checkShape(t, next)
		if got, want := next.Root(), refRoot(model); got != want {
			t.Fatalf("root %s, want %s", got.Short(), want.Short())
		}
		if !maps.Equal(contents(next), model) {
			t.Fatal("contents differ from the model")
		}
		for _, k := range pool {
			v, ok := next.Get(k)
			if mv, mok := model[k]; v != mv || ok != mok {
				t.Fatalf("Get(%s) = %s %v, want %s %v", k.Short(), v.Short(), ok, mv.Short(), mok)
			}
		}
		tr = next
	}
}

// TestSMTOrderIndependent checks that the root depends on the set only: a
// shuffled batch, one pair at a time, and one batch from scratch agree.
func TestSMTOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pool := genPool(t)
		start := NewSMT().Update(genBatch(pool, 30).Draw(t, "start"))
		batch := genBatch(pool, 30).Draw(t, "batch")
		// Repeated keys make order matter by definition (last wins).
		seen := map[Hash]bool{}
		batch = slices.DeleteFunc(batch, func(kv KV) bool { d := seen[kv.Key]; seen[kv.Key] = true; return d })

		want := start.Update(batch).Root()
		if got := start.Update(rapid.Permutation(batch).Draw(t, "shuffled")).Root(); got != want {
			t.Fatal("shuffled batch gives another root")
		}
		one := start
		for _, kv := range batch {
			one = one.Update([]KV{kv})
		}
		if one.Root() != want {
			t.Fatal("one pair at a time gives another root")
		}
		var all []KV
		for k, v := range contents(one) {
			all = append(all, KV{k, v})
		}
		if BuildSMT(all).Root() != want {
			t.Fatal("BuildSMT gives another root")
		}
	})
}

func TestSMTLarge(t *testing.T) {
	kvs := randomKVs(1, 5000)
	tr := BuildSMT(kvs)
	model := map[Hash]Hash{}
	applyRef(model, kvs)
	// Rewrite some, delete some, add some, in one batch.
	batch := append(randomKVs(2, 500), kvs[:300]...)
	for i := range 300 {
		batch[500+i].Value = Hash{}
	}
	for i := 300; i < 600; i++ {
		batch = append(batch, KV{kvs[i].Key, val(7)})
	}
	next := tr.Update(batch)
	applyRef(model, batch)
	if next.Root() != refRoot(model) || next.Len() != len(model) {
		t.Fatal("large update does not match the reference")
	}
	if tr.Root() != BuildSMT(kvs).Root() {
		t.Fatal("Update changed the old tree")
	}
	var prev Hash
	n := 0
	next.Walk(func(k, _ Hash) bool {
		if n > 0 && compareKeys(prev, k) >= 0 {
			t.Fatal("Walk out of order")
		}
		prev, n = k, n+1
		return n < 100
	})
	if n != 100 {
		t.Fatalf("Walk did not stop: %d keys", n)
	}
}

func TestPrefixBits(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := genKey(Hash{}).Draw(t, "key")
		from := rapid.IntRange(0, 256).Draw(t, "from")
		n := rapid.IntRange(0, min(maxSkip, 256-from)).Draw(t, "n")
		var want uint32
		for d := from; d < from+n; d++ {
			want = want<<1 | uint32(bitOf(k, d))
		}
		if got := prefixBits(k, from, n); got != want {
			t.Fatalf("prefixBits(%s, %d, %d) = %b, want %b", k, from, n, got, want)
		}
	})
}
