package block

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"storesync/merkle"
)

// proofDomain separates proof attestations from block signatures.
const proofDomain = "storesync/proof/v1"

// ProofSize is the length of an encoded proof.
const ProofSize = 1 + 8 + merkle.Size + ed25519.SignatureSize

// Proof attests that block Number with commitment Commitment is proven. Here
// it is an Ed25519 attestation by the prover key; the Verifier interface is
// the seam where a real proof system would go.
type Proof struct {
	Number     uint64
	Commitment merkle.Hash
	Signature  [ed25519.SignatureSize]byte
}

// Prove makes the prover's attestation for a block.
func Prove(key ed25519.PrivateKey, number uint64, commitment merkle.Hash) *Proof {
	p := &Proof{Number: number, Commitment: commitment}
	copy(p.Signature[:], ed25519.Sign(key, p.message()))
	return p
}

func (p *Proof) message() []byte {
	m := signedMessage(proofDomain, p.Commitment)
	return le.AppendUint64(m, p.Number)
}

// Encode returns the canonical encoding of p.
func (p *Proof) Encode() []byte {
	b := make([]byte, 0, ProofSize)
	b = append(b, EncodingVersion)
	b = le.AppendUint64(b, p.Number)
	b = append(b, p.Commitment[:]...)
	return append(b, p.Signature[:]...)
}

// DecodeProof parses an encoded proof.
func DecodeProof(data []byte) (*Proof, error) {
	if len(data) != ProofSize {
		return nil, &DecodeError{What: "proof", Field: "proof", Reason: fmt.Sprintf("want %d bytes, got %d", ProofSize, len(data))}
	}
	if data[0] != EncodingVersion {
		return nil, &DecodeError{What: "proof", Field: "encoding version", Reason: fmt.Sprintf("unknown version %d (want %d)", data[0], EncodingVersion)}
	}
	p := &Proof{Number: le.Uint64(data[1:])}
	copy(p.Commitment[:], data[9:])
	copy(p.Signature[:], data[9+merkle.Size:])
	return p, nil
}

// ErrProof is wrapped by every proof verification failure.
var ErrProof = errors.New("bad proof")

// Verifier checks a proof of block number against the block's commitment.
type Verifier interface {
	VerifyProof(number uint64, commitment merkle.Hash, proof []byte) error
}

// KeyVerifier verifies Ed25519 attestations by one prover key.
type KeyVerifier struct{ Key ed25519.PublicKey }

// VerifyProof implements Verifier.
func (v KeyVerifier) VerifyProof(number uint64, commitment merkle.Hash, data []byte) error {
	p, err := DecodeProof(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProof, err)
	}
	if p.Number != number {
		return fmt.Errorf("%w: proof is for block %d, not %d", ErrProof, p.Number, number)
	}
	if p.Commitment != commitment {
		return fmt.Errorf("%w: proof attests commitment %s, block %d has %s", ErrProof, p.Commitment.Short(), number, commitment.Short())
	}
	if !ed25519.Verify(v.Key, p.message(), p.Signature[:]) {
		return fmt.Errorf("%w: attestation for block %d does not verify against prover key %x", ErrProof, number, v.Key[:4])
	}
	return nil
}
