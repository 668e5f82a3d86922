package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"math/bits"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"storesync/block"
	"storesync/merkle"
)

// BenchmarkApplyBlock applies generated blocks to a real store (fsync on)
// and reports throughput and where the time goes, stage by stage, next to
// each stage's own limit measured in the same run on the same data:
//
//	validate: hashing every byte of the block once plus one signature check
//	trees:    the Join calls a tree update needs at minimum (keys x depth)
//	file:     plain write + fdatasync of the same bytes
//	sqlite:   plain single-row INSERTs of the same rows in one transaction
func BenchmarkApplyBlock(b *testing.B) {
	for _, p := range []struct {
		name   string
		blocks int
	}{{"small", 512}, {"standard", 96}, {"large", 16}} {
		b.Run(p.name, func(b *testing.B) { benchApply(b, p.name, p.blocks) })
	}
}

func benchApply(b *testing.B, profile string, n int) {
	c := testChain(b, profile, n)
	ctx := context.Background()
	var s *Store
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	var sum Report
	var bytes int
	applied := 0
	b.ResetTimer()
	for i := range b.N {
		k := i % n
		if k == 0 {
			b.StopTimer()
			if s != nil {
				s.Close()
			}
			s = openStore(b, b.TempDir(), c)
			b.StartTimer()
		}
		r, err := s.ApplyBlock(ctx, c.Blocks[k])
		if err != nil {
			b.Fatal(err)
		}
		sum.Validate += r.Validate
		sum.Trees += r.Trees
		sum.BlockFile += r.BlockFile
		sum.SQLite += r.SQLite
		sum.State += r.State
		bytes += r.Bytes
		applied++
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(applied) }
	b.ReportMetric(float64(applied)/b.Elapsed().Seconds(), "blocks/s")
	b.ReportMetric(float64(bytes)/1e6/b.Elapsed().Seconds(), "MB/s")
	b.ReportMetric(per(sum.Validate), "validate-µs/blk")
	b.ReportMetric(per(sum.Trees), "trees-µs/blk")
	b.ReportMetric(per(sum.BlockFile), "file-µs/blk")
	b.ReportMetric(per(sum.SQLite), "sqlite-µs/blk")
	b.ReportMetric(per(sum.State), "state-µs/blk")

	// The limits, on the same blocks (up to applied of them).
	m := min(applied, n)
	lim := stageLimits(b, c.Blocks[:m], c.States[m].Accounts.Len(), c.States[m].Nullifiers.Len())
	b.ReportMetric(lim[0], "validate-limit-µs/blk")
	b.ReportMetric(lim[1], "trees-limit-µs/blk")
	b.ReportMetric(lim[2], "file-limit-µs/blk")
	b.ReportMetric(lim[3], "sqlite-limit-µs/blk")
}

// stageLimits measures the four limits in µs per block.
func stageLimits(b *testing.B, blocks []*block.Block, accounts, nullifiers int) [4]float64 {
	var out [4]float64
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(len(blocks)) }
	data := make([][]byte, len(blocks))
	for i, blk := range blocks {
		data[i] = blk.Encode()
	}
	producer := ed25519.PublicKey(blocks[0].Header.ProducerKey[:])

	t := time.Now()
	for i, blk := range blocks {
		merkle.Sum(data[i])
		c := blk.Header.Commitment()
		ed25519.Verify(producer, c[:], blk.Signature[:])
	}
	out[0] = us(time.Since(t))

	depth := func(size int) int { return bits.Len(uint(size)) + 1 }
	var h merkle.Hash
	t = time.Now()
	for _, blk := range blocks {
		for range len(blk.Body.Accounts) * depth(accounts) {
			h = merkle.Join(h, h)
		}
		for range len(blk.Body.Nullifiers) * depth(nullifiers) {
			h = merkle.Join(h, h)
		}
	}
	out[1] = us(time.Since(t))

	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "raw.seg"))
	if err != nil {
		b.Fatal(err)
	}
	var off int64
	t = time.Now()
	for _, d := range data {
		if _, err := f.WriteAt(d, off); err != nil {
			b.Fatal(err)
		}
		off += int64(len(d))
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	out[2] = us(time.Since(t))
	f.Close()

	db, err := openDB(dir, DefaultOptions.SQLiteCacheBytes)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	prep := func(q string) *sql.Stmt {
		st, err := conn.PrepareContext(context.Background(), q)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	insBlock := prep(`INSERT INTO blocks (number, commitment, header, file_offset, file_length, file_hash) VALUES (?, ?, ?, 0, 0, ?)`)
	insNote := prep(`INSERT INTO notes (pos, tag, id, sender, details) VALUES (?, ?, ?, ?, ?)`)
	insMMR := prep(`INSERT INTO mmr (pos, hash) VALUES (?, ?)`)
	exec := func(st *sql.Stmt, args ...any) {
		if _, err := st.Exec(args...); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([][]merkle.Hash, len(blocks))
	for i, blk := range blocks {
		ids[i] = blk.NoteIDs()
	}
	t = time.Now()
	for i, blk := range blocks {
		n := blk.Header.Number
		if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
			b.Fatal(err)
		}
		c := blk.Header.Commitment()
		exec(insBlock, n, c[:], blk.Header.Encode(), c[:])
		for j, nt := range blk.Body.Notes {
			exec(insNote, notePos(n, uint32(j)), nt.Tag, ids[i][j][:], nt.Sender[:], nt.Details)
		}
		// An MMR appends two nodes per block on average.
		exec(insMMR, 2*n, c[:])
		exec(insMMR, 2*n+1, c[:])
		if _, err := conn.ExecContext(context.Background(), `COMMIT`); err != nil {
			b.Fatal(err)
		}
	}
	out[3] = us(time.Since(t))
	return out
}
