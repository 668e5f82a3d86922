package merkle

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/zeebo/blake3"
)

// BenchmarkHash backs the choice of BLAKE3 in doc.go: interior nodes hash
// 64 bytes, where the cost per call matters more than throughput.
func BenchmarkHash(b *testing.B) {
	for _, size := range []int{64, 64 << 10} {
		data := make([]byte, size)
		b.Run(fmt.Sprintf("sha256/%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				sha256.Sum256(data)
			}
		})
		b.Run(fmt.Sprintf("blake3/%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				blake3.Sum256(data)
			}
		})
	}
	b.Run("Join", func(b *testing.B) {
		b.SetBytes(2 * Size)
		var h Hash
		for b.Loop() {
			h = Join(h, h)
		}
	})
	b.Run("LeafHash", func(b *testing.B) {
		b.SetBytes(2 * Size)
		var h Hash
		for b.Loop() {
			h = LeafHash(h, h)
		}
	})
}

// BenchmarkSMTUpdate applies batches of new random keys to a tree of 100k
// keys, each batch to the same base tree, the shape of applying one block.
func BenchmarkSMTUpdate(b *testing.B) {
	base := BuildSMT(randomKVs(10, 100_000))
	for _, size := range []int{256, 4096} {
		const distinct = 16 // batches cycled through, so keys stay new
		batches := make([][]KV, distinct)
		for i := range batches {
			batches[i] = randomKVs(20+i, size)
		}
		for _, fork := range []int{0, forkMinBatch} {
			mode := "serial"
			if fork > 0 {
				mode = "forked"
			}
			b.Run(fmt.Sprintf("batch=%d/%s", size, mode), func(b *testing.B) {
				setFork(b, fork)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					base.Update(batches[i%distinct])
					i++
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*size), "ns/key")
			})
		}
	}
}

// setFork sets forkMinBatch (0: never fork) for the rest of the test.
func setFork(tb testing.TB, n int) {
	old := forkMinBatch
	forkMinBatch = n
	tb.Cleanup(func() { forkMinBatch = old })
}

// BenchmarkSMTBuild builds a tree of 1M keys, as at startup, and reports
// the heap the tree keeps per key. "sorted" is the input as read back from
// a store in key order.
func BenchmarkSMTBuild(b *testing.B) {
	const n = 1_000_000
	kvs := randomKVs(30, n)
	sorted := slices.SortedFunc(slices.Values(kvs), compareKV)
	for _, bc := range []struct {
		name string
		fork int
		kvs  []KV
	}{
		{"serial", 0, kvs},
		{"forked", forkMinBatch, kvs},
		{"sorted", forkMinBatch, sorted},
	} {
		b.Run(bc.name, func(b *testing.B) {
			setFork(b, bc.fork)
			benchmarkBuild(b, bc.kvs)
		})
	}
}

func benchmarkBuild(b *testing.B, kvs []KV) {
	if b.N > 10 {
		// -benchtime 2000x, right for the others, would take an hour.
		b.Skipf("one build takes about a second; run with -benchtime 2x")
	}
	var t *SMT
	var before, after runtime.MemStats
	for range b.N {
		b.StopTimer() // the previous tree goes, so that the next is measured alone
		t = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		t = BuildSMT(kvs)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(kvs)), "B/key")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(kvs)), "ns/key")
	runtime.KeepAlive(t)
	runtime.KeepAlive(kvs) // else its 64 MB, freed after the loop, offset the count
}

func BenchmarkMMRAppend(b *testing.B) {
	m := &MMR{}
	leaf := Sum([]byte("block"))
	for b.Loop() {
		m = m.Append(leaf)
	}
}

func BenchmarkMMRRoot(b *testing.B) {
	m := &MMR{}
	for i := range 1<<20 - 1 { // 20 peaks, the worst case near a million
		m = m.Append(hashOfInt(i))
	}
	for b.Loop() {
		m.Root()
	}
}

func BenchmarkRoot(b *testing.B) {
	for _, n := range []int{256, 4096} {
		leaves := make([]Hash, n)
		for i := range leaves {
			leaves[i] = hashOfInt(i)
		}
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Root(leaves)
			}
		})
	}
}
