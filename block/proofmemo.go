package block

import (
	"bytes"
	"sync"

	"storesync/merkle"
)

// MemoVerifier is a Verifier that remembers the last proofs that passed, so
// that a proof checked where it arrived (a follower's fetch) is not checked
// again where it is applied (the store's ApplyProofs): each check is an
// Ed25519 verification, a fifth of a catch-up's CPU when done twice. It
// holds a fixed number of slots, one per block number modulo their count,
// so its memory does not grow with the chain; a proof that fell out is
// just checked again. Only a proof byte for byte equal to one that passed,
// for the same block and commitment, skips the check. thread-safe.
type MemoVerifier struct {
	inner Verifier
	mu    sync.Mutex
	slots []proofMemo
}

type proofMemo struct {
	number     uint64
	commitment merkle.Hash
	proof      [ProofSize]byte
	ok         bool
}

// NewMemoVerifier remembers up to slots proofs (at least one) that inner
// passed.
func NewMemoVerifier(inner Verifier, slots int) *MemoVerifier {
	return &MemoVerifier{inner: inner, slots: make([]proofMemo, max(slots, 1))}
}

// VerifyProof implements Verifier.
func (v *MemoVerifier) VerifyProof(number uint64, commitment merkle.Hash, proof []byte) error {
	if len(proof) != ProofSize {
		return v.inner.VerifyProof(number, commitment, proof) // says what is wrong with it
	}
	i := number % uint64(len(v.slots))
	v.mu.Lock()
	m := v.slots[i]
	v.mu.Unlock()
	if m.ok && m.number == number && m.commitment == commitment && bytes.Equal(m.proof[:], proof) {
		return nil
	}
	if err := v.inner.VerifyProof(number, commitment, proof); err != nil {
		return err
	}
	m = proofMemo{number: number, commitment: commitment, ok: true}
	copy(m.proof[:], proof)
	v.mu.Lock()
	v.slots[i] = m
	v.mu.Unlock()
	return nil
}
