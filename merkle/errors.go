package merkle

import "errors"

// Errors are wrapped with the operation and the detail (which field, which
// bound) so that a caller can both test for the kind and log what was wrong.
var (
	// ErrMalformedProof is returned by the proof decoders when the bytes are
	// not exactly one canonical encoding of a proof within the size bounds.
	ErrMalformedProof = errors.New("malformed proof")

	// ErrLeafOutOfRange is returned when a proof is asked for a leaf index at
	// or past the number of leaves.
	ErrLeafOutOfRange = errors.New("leaf index out of range")
)
