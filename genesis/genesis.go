// Package genesis holds the genesis file: the chain id, the producer and
// prover public keys, the initial accounts and the commitment of the genesis
// block they define. It is every store's trust anchor: a store only accepts
// blocks that chain back to this commitment and are signed by this producer,
// and only proofs attested by this prover.
package genesis

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"storesync/block"
	"storesync/internal/atomicfile"
	"storesync/merkle"
)

// Account is an initial account.
type Account struct {
	ID         merkle.Hash `json:"id"`
	Commitment merkle.Hash `json:"commitment"`
}

// Key is an Ed25519 public key written as hex.
type Key []byte

// MarshalText encodes k as hex.
func (k Key) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(k)), nil }

// UnmarshalText decodes a hex public key.
func (k *Key) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if len(d) != ed25519.PublicKeySize {
		return fmt.Errorf("key: want %d bytes, got %d", ed25519.PublicKeySize, len(d))
	}
	*k = d
	return nil
}

// File is the content of a genesis file.
type File struct {
	ChainID     string      `json:"chain_id"`
	ProducerKey Key         `json:"producer_key"`
	ProverKey   Key         `json:"prover_key"`
	Timestamp   uint64      `json:"timestamp"` // unix milliseconds of the genesis block
	Accounts    []Account   `json:"accounts"`
	Commitment  merkle.Hash `json:"genesis_commitment"` // of Block(); checked on load
}

// New builds a genesis file and computes its commitment.
func New(chainID string, producer, prover ed25519.PublicKey, timestamp uint64, accounts []Account) (*File, error) {
	g := &File{ChainID: chainID, ProducerKey: Key(producer), ProverKey: Key(prover), Timestamp: timestamp, Accounts: slices.Clone(accounts)}
	slices.SortFunc(g.Accounts, func(a, b Account) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	if err := g.check(); err != nil {
		return nil, err
	}
	g.Commitment = g.Block().Header.Commitment()
	return g, nil
}

func (g *File) check() error {
	if g.ChainID == "" {
		return fmt.Errorf("genesis: chain_id is empty")
	}
	if len(g.ProducerKey) != ed25519.PublicKeySize || len(g.ProverKey) != ed25519.PublicKeySize {
		return fmt.Errorf("genesis: producer_key and prover_key must both be set")
	}
	for i := range g.Accounts {
		if g.Accounts[i].Commitment.IsZero() {
			return fmt.Errorf("genesis: account %s: zero commitment", g.Accounts[i].ID)
		}
		if i > 0 && bytes.Compare(g.Accounts[i-1].ID[:], g.Accounts[i].ID[:]) >= 0 {
			return fmt.Errorf("genesis: account %s: accounts must be sorted by id and unique", g.Accounts[i].ID)
		}
	}
	return nil
}

// Producer returns the block producer's public key.
func (g *File) Producer() ed25519.PublicKey { return ed25519.PublicKey(g.ProducerKey) }

// Verifier returns the proof verifier for this chain.
func (g *File) Verifier() block.Verifier {
	return block.KeyVerifier{Key: ed25519.PublicKey(g.ProverKey)}
}

// Block returns the genesis block. It is not signed: it is trusted because
// its commitment is the one in the genesis file. Its previous commitment is
// the hash of the chain id, so two chains with the same keys and accounts
// still have different genesis commitments.
func (g *File) Block() *block.Block {
	b := &block.Block{}
	b.Header.Version = block.Version
	b.Header.PrevCommitment = merkle.Sum([]byte("storesync/chain/" + g.ChainID))
	b.Header.Timestamp = g.Timestamp
	copy(b.Header.ProducerKey[:], g.ProducerKey)
	kvs := make([]merkle.KV, len(g.Accounts))
	b.Body.Accounts = make([]block.AccountUpdate, len(g.Accounts))
	for i, a := range g.Accounts {
		kvs[i] = merkle.KV{Key: a.ID, Value: a.Commitment}
		b.Body.Accounts[i] = block.AccountUpdate{ID: a.ID, Commitment: a.Commitment}
	}
	b.Header.AccountRoot = merkle.BuildSMT(kvs).Root()
	return b
}

// Save writes g as indented JSON, durably.
func (g *File) Save(path string) error {
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return fmt.Errorf("save genesis %s: %w", path, err)
	}
	if err := atomicfile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save genesis %s: %w", path, err)
	}
	return nil
}

// Load reads a genesis file and checks that its commitment matches its
// content, so a hand-edited file cannot silently define another chain.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load genesis: %w", err)
	}
	g := &File{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(g); err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	if err := g.check(); err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	if c := g.Block().Header.Commitment(); c != g.Commitment {
		return nil, fmt.Errorf("load genesis %s: genesis_commitment %s does not match the content, which commits to %s", path, g.Commitment, c)
	}
	return g, nil
}
