package merkle

import (
	"testing"

	"pgregory.net/rapid"
)

func TestRootKnownCases(t *testing.T) {
	a, b, c, d, e := Sum([]byte("a")), Sum([]byte("b")), Sum([]byte("c")), Sum([]byte("d")), Sum([]byte("e"))
	n := func(i uint64) Hash { return countHash(i) }
	tests := []struct {
		name   string
		leaves []Hash
		want   Hash
	}{
		{"empty", nil, Hash{}},
		{"one", []Hash{a}, Join(n(1), a)},
		{"two", []Hash{a, b}, Join(n(2), Join(a, b))},
		{"three: c promoted", []Hash{a, b, c}, Join(n(3), Join(Join(a, b), c))},
		{"five: e promoted twice", []Hash{a, b, c, d, e}, Join(n(5), Join(Join(Join(a, b), Join(c, d)), e))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Root(tt.leaves); got != tt.want {
				t.Fatalf("Root = %s, want %s", got.Short(), tt.want.Short())
			}
		})
	}
	if Root([]Hash{a, b, c}) == Root([]Hash{a, b, c, c}) {
		t.Fatal("a repeated last leaf gives the same root")
	}
}

func TestCountHash(t *testing.T) {
	h := countHash(0x0102030405060708)
	want := Hash{8, 7, 6, 5, 4, 3, 2, 1}
	if h != want {
		t.Fatalf("countHash = %x, want %x", h, want)
	}
}

// refRootLevels is Root as specified: pair level by level, promote the odd
// node, then mix in the count.
func refRootLevels(leaves []Hash) Hash {
	if len(leaves) == 0 {
		return Hash{}
	}
	level := append([]Hash(nil), leaves...)
	for len(level) > 1 {
		var next []Hash
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, Join(level[i], level[i+1]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		level = next
	}
	return Join(countHash(uint64(len(leaves))), level[0])
}

func TestRootMatchesLevelByLevel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 300).Draw(t, "n")
		leaves := make([]Hash, n)
		for i := range leaves {
			leaves[i] = hashOfInt(i)
		}
		if got, want := Root(leaves), refRootLevels(leaves); got != want {
			t.Fatalf("n=%d: Root %s, want %s", n, got.Short(), want.Short())
		}
	})
}

func TestRootDoesNotAllocate(t *testing.T) {
	leaves := make([]Hash, 1000)
	if allocs := testing.AllocsPerRun(10, func() { Root(leaves) }); allocs != 0 {
		t.Fatalf("Root allocates %v times", allocs)
	}
}
