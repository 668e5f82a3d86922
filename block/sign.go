package block

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"storesync/merkle"
)

// blockDomain separates block signatures from proof attestations made with
// the same kind of key, so one can never be replayed as the other.
const blockDomain = "storesync/block/v1"

func signedMessage(domain string, c merkle.Hash) []byte {
	m := make([]byte, 0, len(domain)+merkle.Size)
	m = append(m, domain...)
	return append(m, c[:]...)
}

// Sign sets b's producer key and signature. The header must be otherwise
// complete: the signature covers its commitment.
func (b *Block) Sign(key ed25519.PrivateKey) {
	copy(b.Header.ProducerKey[:], key.Public().(ed25519.PublicKey))
	c := b.Header.Commitment()
	copy(b.Signature[:], ed25519.Sign(key, signedMessage(blockDomain, c)))
}

// ErrSignature is returned for a signature that does not verify.
var ErrSignature = errors.New("bad signature")

// VerifySignature checks that b is signed by producer and that the header
// names producer as its key.
func (b *Block) VerifySignature(producer ed25519.PublicKey) error {
	if string(b.Header.ProducerKey[:]) != string(producer) {
		return fmt.Errorf("%w: header names producer %x, genesis says %x", ErrSignature, b.Header.ProducerKey[:4], producer[:4])
	}
	c := b.Header.Commitment()
	if v := b.verified; v != nil && v.producer == string(producer) && v.commitment == c && v.signature == b.Signature {
		return nil
	}
	if !ed25519.Verify(producer, signedMessage(blockDomain, c), b.Signature[:]) {
		return fmt.Errorf("%w: signature does not verify against producer key %x", ErrSignature, producer[:4])
	}
	b.verified = &verifiedBy{producer: string(producer), commitment: c, signature: b.Signature}
	return nil
}
