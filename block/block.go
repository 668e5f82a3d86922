package block

import (
	"crypto/ed25519"

	"storesync/merkle"
)

// Version is the protocol version a header carries; blocks of other
// versions are rejected.
const Version uint32 = 1

// Limits on decoded blocks. They bound memory per block, not the chain.
const (
	// MaxBlockBytes is the largest encoded block accepted; a `large` profile
	// block is about 1.1 MB, so this leaves ample room.
	MaxBlockBytes = 16 << 20
	// MaxNoteDetails bounds the opaque details of one note (the real system's
	// note inputs and assets are a few hundred bytes).
	MaxNoteDetails = 4096
)

// AccountID names an account. It is also the account's key in the account tree.
type AccountID = merkle.Hash

// Header is the signed part of a block.
type Header struct {
	Version         uint32
	Number          uint64
	PrevCommitment  merkle.Hash // commitment of block Number-1; zero for genesis
	ChainCommitment merkle.Hash // MMR root over the commitments of blocks 0..Number-1
	AccountRoot     merkle.Hash // account tree root after this block
	NullifierRoot   merkle.Hash // nullifier tree root after this block
	NoteRoot        merkle.Hash // Root over the IDs of the notes this block creates
	TxCommitment    merkle.Hash // Root over the hashes of this block's transaction headers
	Timestamp       uint64      // unix milliseconds, set by the producer
	ProducerKey     [ed25519.PublicKeySize]byte
}

// AccountUpdate sets an account's state commitment. A block holds at most one
// update per account, sorted by ID.
type AccountUpdate struct {
	ID         AccountID
	Commitment merkle.Hash
}

// Note is an output note. Its ID is derived (NoteID), never carried, so two
// notes can never share an ID.
type Note struct {
	Sender  AccountID
	Tag     uint32
	Details []byte
}

// TxHeader summarises one transaction of the block.
type TxHeader struct {
	ID           merkle.Hash
	Account      AccountID
	InitialState merkle.Hash
	FinalState   merkle.Hash
}

// Body holds a block's contents.
type Body struct {
	Accounts     []AccountUpdate // sorted by ID, unique
	Notes        []Note          // in creation order
	Nullifiers   []merkle.Hash   // sorted, unique
	Transactions []TxHeader
}

// Block is a header, a body and the producer's signature over the header's
// commitment.
type Block struct {
	Header    Header
	Body      Body
	Signature [ed25519.SignatureSize]byte
	// verified is the last signature check that passed on this value: a
	// follower checks a block's signature when it arrives (to blame a
	// forging upstream at once) and again in the store's validation (the
	// primary's checks define a valid block), and an Ed25519 verification
	// is a third of a small block's validation. Not safe for concurrent
	// VerifySignature calls on one value; nothing makes them.
	verified *verifiedBy
}

// verifiedBy is what a passed signature check covered: the same key, header
// and signature verify again without the curve arithmetic.
type verifiedBy struct {
	producer   string
	commitment merkle.Hash
	signature  [ed25519.SignatureSize]byte
}

// Commitment returns the hash of the encoded header: the block's identity.
func (h *Header) Commitment() merkle.Hash {
	var buf [headerSize]byte
	h.put(buf[:])
	return merkle.Sum(buf[:])
}

// NoteID derives the ID of the note at index i of block number. It binds the
// note to its position so equal contents in two places get two IDs.
func NoteID(number uint64, index uint32, n *Note) merkle.Hash {
	d := merkle.Sum(n.Details)
	var buf [8 + 4 + merkle.Size + 4 + merkle.Size]byte
	le.PutUint64(buf[0:], number)
	le.PutUint32(buf[8:], index)
	copy(buf[12:], n.Sender[:])
	le.PutUint32(buf[44:], n.Tag)
	copy(buf[48:], d[:])
	return merkle.Sum(buf[:])
}

// NoteIDs returns the IDs of every note in b, in order.
func (b *Block) NoteIDs() []merkle.Hash {
	ids := make([]merkle.Hash, len(b.Body.Notes))
	for i := range b.Body.Notes {
		ids[i] = NoteID(b.Header.Number, uint32(i), &b.Body.Notes[i])
	}
	return ids
}

// Hash returns the hash of a transaction header.
func (t *TxHeader) Hash() merkle.Hash {
	var buf [4 * merkle.Size]byte
	copy(buf[0:], t.ID[:])
	copy(buf[32:], t.Account[:])
	copy(buf[64:], t.InitialState[:])
	copy(buf[96:], t.FinalState[:])
	return merkle.Sum(buf[:])
}

// TxCommitment computes the transaction commitment of a body.
func (b *Body) TxCommitment() merkle.Hash {
	hs := make([]merkle.Hash, len(b.Transactions))
	for i := range b.Transactions {
		hs[i] = b.Transactions[i].Hash()
	}
	return merkle.Root(hs)
}

// NoteRoot computes the note root of block number with this body.
func NoteRoot(ids []merkle.Hash) merkle.Hash { return merkle.Root(ids) }
