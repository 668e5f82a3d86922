package merkle

import (
	"encoding/binary"
	"maps"
	"slices"

	"pgregory.net/rapid"
)

// refRoot computes the SMT root of m straight from the recursive definition
// in the SMT doc comment, with none of the tree's shortcuts.
func refRoot(m map[Hash]Hash) Hash {
	keys := slices.SortedFunc(maps.Keys(m), compareKeys)
	return refHash(m, keys, 0)
}

func refHash(m map[Hash]Hash, keys []Hash, d int) Hash {
	switch len(keys) {
	case 0:
		return Hash{}
	case 1:
		return LeafHash(keys[0], m[keys[0]])
	}
	var sides [2][]Hash
	for _, k := range keys {
		b := k[d/8] >> (7 - d%8) & 1
		sides[b] = append(sides[b], k)
	}
	return Join(refHash(m, sides[0], d+1), refHash(m, sides[1], d+1))
}

// applyRef applies a batch to a model map the way Update is documented to:
// pairs in order, zero deletes.
func applyRef(m map[Hash]Hash, kvs []KV) {
	for _, kv := range kvs {
		if kv.Value.IsZero() {
			delete(m, kv.Key)
		} else {
			m[kv.Key] = kv.Value
		}
	}
}

func contents(t *SMT) map[Hash]Hash {
	m := map[Hash]Hash{}
	t.Walk(func(k, v Hash) bool { m[k] = v; return true })
	return m
}

// checkShape verifies the invariants the fast paths rely on: branches have
// two children, sit at the depth their parent says, split exactly at their
// bit, and cache the right hash.
func checkShape(tb interface {
	Helper()
	Fatalf(string, ...any)
}, tr *SMT) {
	tb.Helper()
	// prefix holds the first plen bits of the path to n; bit plen (if
	// any) is the side, checked by the parent.
	var walkNode func(n node, top int, prefix Hash, plen int) (keys []Hash)
	walkNode = func(n node, top int, prefix Hash, plen int) []Hash {
		switch x := n.(type) {
		case *leaf:
			if x.value.IsZero() {
				tb.Fatalf("leaf %s: zero value", x.key.Short())
			}
			if commonPrefix(x.key, prefix) < plen {
				tb.Fatalf("leaf %s at depth %d off its path", x.key.Short(), top)
			}
			return []Hash{x.key}
		case *branch:
			if int(x.top) != top || int(x.bit) < top || x.kids[0] == nil || x.kids[1] == nil {
				tb.Fatalf("branch bit %d top %d at depth %d: bad shape", x.bit, x.top, top)
			}
			k0 := walkNode(x.kids[0], int(x.bit)+1, anyKey(x), int(x.bit))
			k1 := walkNode(x.kids[1], int(x.bit)+1, anyKey(x), int(x.bit))
			for i, ks := range [][]Hash{k0, k1} {
				for _, k := range ks {
					if bitOf(k, int(x.bit)) != i || commonPrefix(k, k0[0]) < int(x.bit) {
						tb.Fatalf("key %s under the wrong side of bit %d", k.Short(), x.bit)
					}
				}
			}
			all := append(k0, k1...)
			if int(x.bit)-top <= maxSkip && x.skip != prefixBits(all[0], top, int(x.bit)-top) {
				tb.Fatalf("branch bit %d top %d: skip %b is stale", x.bit, x.top, x.skip)
			}
			m := map[Hash]Hash{}
			for _, k := range all {
				v, _ := tr.Get(k)
				m[k] = v
			}
			for i, ks := range [][]Hash{k0, k1} {
				if want := refHash(m, ks, int(x.bit)+1); x.hashes[i] != want {
					tb.Fatalf("branch bit %d: stored hash of child %d is stale", x.bit, i)
				}
			}
			if want := refHash(m, all, top); x.hashAt(top) != want {
				tb.Fatalf("branch bit %d top %d: hash is wrong", x.bit, x.top)
			}
			return all
		case nil:
			if top != 0 {
				tb.Fatalf("nil child at depth %d", top)
			}
		}
		return nil
	}
	keys := walkNode(tr.root, 0, Hash{}, 0)
	m := map[Hash]Hash{}
	for _, k := range keys {
		m[k], _ = tr.Get(k)
	}
	if tr.Root() != refHash(m, keys, 0) {
		tb.Fatalf("stored root is wrong")
	}
	if len(keys) != tr.Len() {
		tb.Fatalf("Len %d, tree holds %d keys", tr.Len(), len(keys))
	}
}

// genKey draws keys that share a random-length prefix with base, so that
// trees get long chains and splits deep down, up to keys one bit apart.
func genKey(base Hash) *rapid.Generator[Hash] {
	return rapid.Custom(func(t *rapid.T) Hash {
		var k Hash
		for i := 0; i < Size; i += 8 {
			binary.BigEndian.PutUint64(k[i:], rapid.Uint64().Draw(t, "word"))
		}
		shared := rapid.OneOf(rapid.IntRange(0, 12), rapid.IntRange(240, 256), rapid.IntRange(0, 256)).Draw(t, "shared")
		for d := range shared {
			k[d/8] = k[d/8]&^(0x80>>(d%8)) | base[d/8]&(0x80>>(d%8))
		}
		return k
	})
}

// genValue draws from few values, so rewrites with the same value happen,
// and zero (delete) often.
var genValue = rapid.Custom(func(t *rapid.T) Hash {
	var v Hash
	v[0] = byte(rapid.IntRange(0, 3).Draw(t, "value"))
	return v
})

func genBatch(pool []Hash, maxLen int) *rapid.Generator[[]KV] {
	kv := rapid.Custom(func(t *rapid.T) KV {
		return KV{Key: rapid.SampledFrom(pool).Draw(t, "key"), Value: genValue.Draw(t, "v")}
	})
	return rapid.SliceOfN(kv, 0, maxLen)
}

func genPool(t *rapid.T) []Hash {
	var base Hash
	base[0] = rapid.Byte().Draw(t, "base")
	base[31] = rapid.Byte().Draw(t, "base31")
	return rapid.SliceOfN(genKey(base), 1, 48).Draw(t, "pool")
}

func hashOfInt(i int) Hash {
	var h Hash
	binary.LittleEndian.PutUint64(h[:], uint64(i)+1)
	return Sum(h[:])
}

func randomKVs(seed, n int) []KV {
	kvs := make([]KV, n)
	for i := range kvs {
		kvs[i] = KV{Key: hashOfInt(seed*1e9 + i), Value: hashOfInt(-seed*1e9 - i - 2)}
	}
	return kvs
}
