package block_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"crypto/ed25519"
	"storesync/merkle"

	"storesync/block"
	"storesync/workload"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, p := range workload.Profiles {
		t.Run(p.Name, func(t *testing.T) {
			c, err := workload.BuildChain(5, p, 3, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range c.Blocks {
				data := b.Encode()
				if len(data) != b.Size() {
					t.Fatalf("Size() = %d, encoding is %d bytes", b.Size(), len(data))
				}
				got, err := block.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Encode(), data) || got.Header != b.Header {
					t.Fatalf("block %d does not round-trip", b.Header.Number)
				}
				if err := got.VerifySignature(c.Genesis.Producer()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeBounded: a length prefix larger than the input is refused before
// anything is allocated for it, with an error naming the field.
func TestDecodeBounded(t *testing.T) {
	p, _ := workload.ProfileByName("small")
	c, err := workload.BuildChain(5, p, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	data := c.Blocks[0].Encode()
	countAt := 1 + len(c.Blocks[0].Header.Encode())
	cases := []struct {
		name  string
		edit  func([]byte) []byte
		field string
	}{
		{"huge account count", func(d []byte) []byte { d[countAt+3] = 0xff; return d }, "account updates count"},
		{"unknown encoding version", func(d []byte) []byte { d[0] = 9; return d }, "encoding version"},
		{"trailing byte", func(d []byte) []byte { return append(d, 0) }, "end"},
		{"truncated signature", func(d []byte) []byte { return d[:len(d)-1] }, "signature"},
		{"empty", func([]byte) []byte { return nil }, "encoding version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.edit(append([]byte(nil), data...))
			allocated := bytesAllocated(func() { _, _ = block.Decode(d) })
			_, err := block.Decode(d)
			var de *block.DecodeError
			if !errors.As(err, &de) || de.Field != tc.field && !strings.HasPrefix(de.Field, tc.field) {
				t.Fatalf("got %v, want a decode error on %q", err, tc.field)
			}
			if allocated > 4*len(d)+4096 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(d), allocated)
			}
		})
	}
}

func TestProofVerifier(t *testing.T) {
	keys := workload.DevKeys(2)
	other := workload.DevKeys(3)
	v := block.KeyVerifier{Key: keys.Prover.Public().(ed25519.PublicKey)}
	c := merkle.Sum([]byte("block 5"))
	good := block.Prove(keys.Prover, 5, c).Encode()
	if err := v.VerifyProof(5, c, good); err != nil {
		t.Fatalf("valid proof: %v", err)
	}
	cases := []struct {
		name   string
		number uint64
		commit merkle.Hash
		proof  []byte
	}{
		{"other block number", 6, c, good},
		{"other commitment", 5, merkle.Sum([]byte("x")), good},
		{"other prover", 5, c, block.Prove(other.Prover, 5, c).Encode()},
		{"producer's key is not the prover's", 5, c, block.Prove(keys.Producer, 5, c).Encode()},
		{"truncated", 5, c, good[:len(good)-1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.VerifyProof(tc.number, tc.commit, tc.proof); !errors.Is(err, block.ErrProof) {
				t.Fatalf("got %v, want ErrProof", err)
			}
		})
	}
}

func bytesAllocated(f func()) int {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int(after.TotalAlloc - before.TotalAlloc)
}

// TestVerifySignatureAgain: a block whose signature passed verifies again
// (the follower checks it on arrival and in the store), but any change of
// its header, its signature or the key asked for is checked afresh.
func TestVerifySignatureAgain(t *testing.T) {
	c, err := workload.BuildChain(5, workload.Profiles[0], 2, 1000)
	if err != nil {
		t.Fatal(err)
	}
	producer := c.Genesis.Producer()
	fresh := func() *block.Block {
		b, err := block.Decode(c.Blocks[0].Encode())
		if err != nil {
			t.Fatal(err)
		}
		if err := b.VerifySignature(producer); err != nil {
			t.Fatal(err)
		}
		if err := b.VerifySignature(producer); err != nil {
			t.Fatalf("a verified block verifies no more: %v", err)
		}
		return b
	}
	other, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(b *block.Block) ed25519.PublicKey
	}{
		{"header changed", func(b *block.Block) ed25519.PublicKey { b.Header.Timestamp++; return producer }},
		{"signature changed", func(b *block.Block) ed25519.PublicKey { b.Signature[7] ^= 1; return producer }},
		{"signature of another block", func(b *block.Block) ed25519.PublicKey { b.Signature = c.Blocks[1].Signature; return producer }},
		{"another key asked for", func(b *block.Block) ed25519.PublicKey {
			copy(b.Header.ProducerKey[:], other)
			return other
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fresh()
			key := tc.change(b)
			if err := b.VerifySignature(key); !errors.Is(err, block.ErrSignature) {
				t.Fatalf("changed after a passed check: %v, want ErrSignature", err)
			}
			// A copy carries what the check covered, and is held to it.
			cp := *b
			if err := cp.VerifySignature(key); !errors.Is(err, block.ErrSignature) {
				t.Fatalf("copy: %v, want ErrSignature", err)
			}
		})
	}
}
