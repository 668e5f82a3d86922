// Package block defines the chain's blocks and proofs: their types, their
// canonical binary encoding, their commitments and their signatures.
//
// Encoding. A block is encoded as one byte of encoding version, a fixed-size
// header, four length-prefixed lists (account updates, notes, nullifiers,
// transaction headers) and the producer's signature. Integers are
// little-endian. There is exactly one encoding of a given block: Decode
// rejects trailing bytes and unknown versions, and Encode(Decode(b)) == b.
//
// Bounded decoding. Every list count is checked against the bytes that
// remain before anything is allocated, so a hostile length prefix can never
// make the decoder allocate more than a small multiple of the input size.
//
// Commitments. The block commitment is the hash of the encoded header; the
// signature covers the commitment, and the header in turn commits to the body
// through the transaction commitment, note root, account root and nullifier
// root. The last two depend on the chain state, so they are checked by the
// state package, not here.
package block
