package block_test

import (
	"bytes"
	"errors"
	"testing"

	"storesync/block"
	"storesync/workload"
)

// FuzzDecode: any input either fails with a DecodeError or decodes to a
// block whose encoding is exactly the input (the encoding is canonical).
func FuzzDecode(f *testing.F) {
	p, _ := workload.ProfileByName("small")
	c, err := workload.BuildChain(3, p, 3, 1000)
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range c.Blocks {
		data := b.Encode()
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add(c.Genesis.Block().Encode())
	f.Add([]byte{})
	f.Add([]byte{block.EncodingVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := block.Decode(data)
		if err != nil {
			if !errors.Is(err, block.ErrDecode) {
				t.Fatalf("decode error %v is not an ErrDecode", err)
			}
			return
		}
		if !bytes.Equal(b.Encode(), data) {
			t.Fatalf("decode then encode changed %d bytes into %d", len(data), len(b.Encode()))
		}
	})
}

// FuzzDecodeProof: same for proofs.
func FuzzDecodeProof(f *testing.F) {
	keys := workload.DevKeys(1)
	f.Add(block.Prove(keys.Prover, 5, [32]byte{1}).Encode())
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := block.DecodeProof(data)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Encode(), data) {
			t.Fatalf("proof encoding is not canonical")
		}
	})
}
