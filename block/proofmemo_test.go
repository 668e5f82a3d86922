package block

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"storesync/merkle"
)

// countingVerifier counts the checks that reach the real verifier.
type countingVerifier struct {
	inner Verifier
	calls int
}

func (c *countingVerifier) VerifyProof(n uint64, commitment merkle.Hash, proof []byte) error {
	c.calls++
	return c.inner.VerifyProof(n, commitment, proof)
}

func TestMemoVerifier(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	inner := &countingVerifier{inner: KeyVerifier{Key: pub}}
	const slots = 8
	v := NewMemoVerifier(inner, slots)
	c1, c2 := merkle.Sum([]byte("block 1")), merkle.Sum([]byte("block 2"))
	good := Prove(priv, 1, c1).Encode()

	check := func(step string, n uint64, c merkle.Hash, proof []byte, wantErr bool, wantCalls int) {
		t.Helper()
		err := v.VerifyProof(n, c, proof)
		if wantErr != (err != nil) {
			t.Fatalf("%s: err = %v, want error %v", step, err, wantErr)
		}
		if err != nil && !errors.Is(err, ErrProof) {
			t.Fatalf("%s: %v is not an ErrProof", step, err)
		}
		if inner.calls != wantCalls {
			t.Fatalf("%s: %d checks reached the key, want %d", step, inner.calls, wantCalls)
		}
	}
	check("first check", 1, c1, good, false, 1)
	check("the same proof again", 1, c1, good, false, 1)
	check("the same proof for another commitment", 1, c2, good, true, 2)
	check("the same proof for another block", 1+slots, c1, good, true, 3)
	check("still remembered after the failures", 1, c1, good, false, 3)

	forged := append([]byte(nil), good...)
	forged[len(forged)-1] ^= 1
	check("a proof one bit off", 1, c1, forged, true, 4)
	check("a forged proof is not remembered", 1, c1, forged, true, 5)
	check("a short proof", 1, c1, good[:10], true, 6)

	other := Prove(priv, 1+slots, c2).Encode()
	check("a block in the same slot", 1+slots, c2, other, false, 7)
	check("the one it evicted is checked again", 1, c1, good, false, 8)
	check("and remembered again", 1, c1, good, false, 8)
}
