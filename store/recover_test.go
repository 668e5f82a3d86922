package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func segPath(dir, kind string, seg int) string {
	return filepath.Join(dir, kind, fmt.Sprintf("%08d.seg", seg))
}

// TestOpenCutsUncommittedTail: bytes and segments written after the last
// commit (a crash between block file and SQLite commit) are discarded.
func TestOpenCutsUncommittedTail(t *testing.T) {
	c := testChain(t, "small", 8)
	dir := t.TempDir()
	s := openStore(t, dir, c)
	applyAll(t, s, c.Blocks[:5])
	before := takeFingerprint(t, s)
	s.Close()

	appendTo := func(path string, data []byte) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(segPath(dir, "blocks", 0), c.Blocks[5].Encode())
	appendTo(segPath(dir, "blocks", 1), []byte("half a block"))
	appendTo(segPath(dir, "proofs", 0), []byte("a proof never committed"))

	s = openStore(t, dir, c)
	defer s.Close()
	sameFingerprint(t, before, takeFingerprint(t, s))
	applyAll(t, s, c.Blocks[5:])
	if s.Snapshot().State.Commitment != c.States[8].Commitment {
		t.Fatal("store diverged after recovery")
	}
}

// TestOpenDetectsDamage: damage to committed data fails Open with an error
// naming the file and the block, and Open changes nothing.
func TestOpenDetectsDamage(t *testing.T) {
	c := testChain(t, "small", 8)
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"block file missing", func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, "blocks", 0)); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5", "missing"}},
		{"block file cut short", func(t *testing.T, dir string) {
			p := segPath(dir, "blocks", 0)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-1); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5"}},
		{"tip block corrupt", func(t *testing.T, dir string) {
			p := segPath(dir, "blocks", 0)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-100] ^= 0xff
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "block 5", "corrupt"}},
		{"proof file missing", func(t *testing.T, dir string) {
			if err := os.Remove(segPath(dir, "proofs", 0)); err != nil {
				t.Fatal(err)
			}
		}, []string{"00000000.seg", "proof 2", "missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, c)
			applyAll(t, s, c.Blocks[:5])
			for n := 1; n <= 2; n++ {
				proveBlock(t, s, c, n)
			}
			s.Close()
			tc.damage(t, dir)
			_, err := Open(dir, c.Genesis)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("got %v, want ErrDamaged", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
