package block

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"storesync/merkle"
)

var le = binary.LittleEndian

// EncodingVersion is the first byte of every encoded block. A new encoding
// gets a new number; old numbers are never reused.
const EncodingVersion byte = 1

const (
	headerSize  = 4 + 8 + 6*merkle.Size + 8 + ed25519.PublicKeySize
	accountSize = 2 * merkle.Size
	noteMinSize = merkle.Size + 4 + 4 // sender, tag, details length
	txSize      = 4 * merkle.Size
)

// ErrDecode is wrapped by every decoding error.
var ErrDecode = errors.New("decode")

// DecodeError says where decoding failed and why.
type DecodeError struct {
	What   string // e.g. "block", "proof"
	Field  string // the field being read
	Offset int    // byte offset of that field
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s: %s at byte %d: %s", e.What, e.Field, e.Offset, e.Reason)
}

// Unwrap lets errors.Is(err, ErrDecode) match.
func (e *DecodeError) Unwrap() error { return ErrDecode }

func (h *Header) put(b []byte) {
	le.PutUint32(b[0:], h.Version)
	le.PutUint64(b[4:], h.Number)
	o := 12
	for _, x := range []*merkle.Hash{&h.PrevCommitment, &h.ChainCommitment, &h.AccountRoot, &h.NullifierRoot, &h.NoteRoot, &h.TxCommitment} {
		copy(b[o:], x[:])
		o += merkle.Size
	}
	le.PutUint64(b[o:], h.Timestamp)
	copy(b[o+8:], h.ProducerKey[:])
}

func (h *Header) get(b []byte) {
	h.Version = le.Uint32(b[0:])
	h.Number = le.Uint64(b[4:])
	o := 12
	for _, x := range []*merkle.Hash{&h.PrevCommitment, &h.ChainCommitment, &h.AccountRoot, &h.NullifierRoot, &h.NoteRoot, &h.TxCommitment} {
		copy(x[:], b[o:])
		o += merkle.Size
	}
	h.Timestamp = le.Uint64(b[o:])
	copy(h.ProducerKey[:], b[o+8:])
}

// EncodeHeader returns the canonical encoding of a header alone (what the
// commitment hashes, and what header reads return).
func (h *Header) Encode() []byte {
	b := make([]byte, headerSize)
	h.put(b)
	return b
}

// DecodeHeader decodes a header produced by Header.Encode.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) != headerSize {
		return h, &DecodeError{What: "header", Field: "header", Reason: fmt.Sprintf("want %d bytes, got %d", headerSize, len(b))}
	}
	h.get(b)
	return h, nil
}

// Size returns the length of b's encoding.
func (b *Block) Size() int {
	n := 1 + headerSize + 4 + len(b.Body.Accounts)*accountSize + 4 + 4 + len(b.Body.Nullifiers)*merkle.Size + 4 + len(b.Body.Transactions)*txSize + ed25519.SignatureSize
	for i := range b.Body.Notes {
		n += noteMinSize + len(b.Body.Notes[i].Details)
	}
	return n
}

// Encode returns the canonical encoding of b.
func (b *Block) Encode() []byte {
	out := make([]byte, b.Size())
	out[0] = EncodingVersion
	b.Header.put(out[1:])
	o := 1 + headerSize
	le.PutUint32(out[o:], uint32(len(b.Body.Accounts)))
	o += 4
	for _, a := range b.Body.Accounts {
		o += copy(out[o:], a.ID[:])
		o += copy(out[o:], a.Commitment[:])
	}
	le.PutUint32(out[o:], uint32(len(b.Body.Notes)))
	o += 4
	for _, n := range b.Body.Notes {
		o += copy(out[o:], n.Sender[:])
		le.PutUint32(out[o:], n.Tag)
		le.PutUint32(out[o+4:], uint32(len(n.Details)))
		o += 8
		o += copy(out[o:], n.Details)
	}
	le.PutUint32(out[o:], uint32(len(b.Body.Nullifiers)))
	o += 4
	for _, n := range b.Body.Nullifiers {
		o += copy(out[o:], n[:])
	}
	le.PutUint32(out[o:], uint32(len(b.Body.Transactions)))
	o += 4
	for _, t := range b.Body.Transactions {
		o += copy(out[o:], t.ID[:])
		o += copy(out[o:], t.Account[:])
		o += copy(out[o:], t.InitialState[:])
		o += copy(out[o:], t.FinalState[:])
	}
	copy(out[o:], b.Signature[:])
	return out
}

// reader walks an encoding; every take is checked against what remains.
type reader struct {
	what string
	b    []byte
	off  int
	err  error
}

func (r *reader) fail(field, reason string) {
	if r.err == nil {
		r.err = &DecodeError{What: r.what, Field: field, Offset: r.off, Reason: reason}
	}
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail(field, fmt.Sprintf("need %d bytes, %d left", n, len(r.b)-r.off))
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

// count reads a list length and checks that count*minSize bytes remain, so
// the caller may allocate count elements without trusting the prefix.
func (r *reader) count(field string, minSize int) int {
	s := r.take(field+" count", 4)
	if s == nil {
		return 0
	}
	n := int(le.Uint32(s))
	if left := len(r.b) - r.off; n > left/minSize {
		r.off -= 4
		r.fail(field+" count", fmt.Sprintf("%d entries of at least %d bytes cannot fit in the %d bytes left", n, minSize, left))
		return 0
	}
	return n
}

func (r *reader) hash(field string, h *merkle.Hash) {
	if s := r.take(field, merkle.Size); s != nil {
		copy(h[:], s)
	}
}

// Decode parses a canonical block encoding. It never allocates more than the
// input size suggests, and rejects anything that Encode would not produce.
func Decode(data []byte) (*Block, error) {
	r := &reader{what: "block", b: data}
	if len(data) > MaxBlockBytes {
		r.fail("block", fmt.Sprintf("%d bytes exceeds the %d-byte limit", len(data), MaxBlockBytes))
		return nil, r.err
	}
	if v := r.take("encoding version", 1); v != nil && v[0] != EncodingVersion {
		r.off--
		r.fail("encoding version", fmt.Sprintf("unknown version %d (want %d)", v[0], EncodingVersion))
	}
	b := &Block{}
	if s := r.take("header", headerSize); s != nil {
		b.Header.get(s)
	}
	if n := r.count("account updates", accountSize); n > 0 {
		b.Body.Accounts = make([]AccountUpdate, n)
		for i := range b.Body.Accounts {
			r.hash("account id", &b.Body.Accounts[i].ID)
			r.hash("account commitment", &b.Body.Accounts[i].Commitment)
		}
	}
	if n := r.count("notes", noteMinSize); n > 0 {
		b.Body.Notes = make([]Note, n)
		for i := range b.Body.Notes {
			nt := &b.Body.Notes[i]
			r.hash("note sender", &nt.Sender)
			if s := r.take("note tag", 4); s != nil {
				nt.Tag = le.Uint32(s)
			}
			s := r.take("note details length", 4)
			if s == nil {
				break
			}
			dl := int(le.Uint32(s))
			if dl > MaxNoteDetails {
				r.off -= 4
				r.fail("note details length", fmt.Sprintf("%d exceeds the %d-byte limit", dl, MaxNoteDetails))
				break
			}
			if d := r.take("note details", dl); d != nil && dl > 0 {
				nt.Details = append([]byte(nil), d...)
			}
		}
	}
	if n := r.count("nullifiers", merkle.Size); n > 0 {
		b.Body.Nullifiers = make([]merkle.Hash, n)
		for i := range b.Body.Nullifiers {
			r.hash("nullifier", &b.Body.Nullifiers[i])
		}
	}
	if n := r.count("transactions", txSize); n > 0 {
		b.Body.Transactions = make([]TxHeader, n)
		for i := range b.Body.Transactions {
			t := &b.Body.Transactions[i]
			r.hash("tx id", &t.ID)
			r.hash("tx account", &t.Account)
			r.hash("tx initial state", &t.InitialState)
			r.hash("tx final state", &t.FinalState)
		}
	}
	if s := r.take("signature", ed25519.SignatureSize); s != nil {
		copy(b.Signature[:], s)
	}
	if r.err == nil && r.off != len(data) {
		r.fail("end", fmt.Sprintf("%d trailing bytes", len(data)-r.off))
	}
	if r.err != nil {
		return nil, r.err
	}
	return b, nil
}
