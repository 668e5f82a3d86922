package merkle

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
)

// Size is the length of a Hash in bytes.
const Size = 32

// Hash is a 32-byte BLAKE3 digest. The zero Hash stands for "empty".
type Hash [Size]byte

// Sum returns the BLAKE3-256 digest of data.
func Sum(data []byte) Hash { return blake3.Sum256(data) }

// Join returns the interior-node hash of two children.
func Join(left, right Hash) Hash {
	var buf [2 * Size]byte
	copy(buf[:Size], left[:])
	copy(buf[Size:], right[:])
	return blake3.Sum256(buf[:])
}

// leafKey domain-separates leaf hashes from interior nodes.
var leafKey = [32]byte{'s', 't', 'o', 'r', 'e', 's', 'y', 'n', 'c', '/', 'l', 'e', 'a', 'f'}

var leafHashers = sync.Pool{New: func() any {
	h, err := blake3.NewKeyed(leafKey[:])
	if err != nil {
		panic(err) // the key length is a constant of this file
	}
	return h
}}

// LeafHash returns the hash of a key/value leaf. It is keyed so that it can
// never equal Join of any two hashes.
func LeafHash(key, value Hash) Hash {
	h := leafHashers.Get().(*blake3.Hasher)
	h.Reset()
	_, _ = h.Write(key[:])
	_, _ = h.Write(value[:])
	var out Hash
	h.Sum(out[:0])
	leafHashers.Put(h)
	return out
}

// IsZero reports whether h is the empty hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns h in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 8 hex digits, for logs.
func (h Hash) Short() string { return hex.EncodeToString(h[:4]) }

// MarshalText encodes h as hex (used by JSON files such as the genesis file).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*Size {
		return fmt.Errorf("hash: want %d hex digits, got %d", 2*Size, len(b))
	}
	_, err := hex.Decode(h[:], b)
	if err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	return nil
}
