// Package workload generates a synthetic but realistic chain: valid signed
// blocks on top of any state, deterministic from a seed. The primary's block
// producer, the tests and the benchmarks all use it, so they all exercise the
// same shapes of data.
//
// Block n of a chain with seed s is a function of (s, n, the state after
// n-1, the notes of block n-SpendDelay) only, so a producer that restarts
// resumes the same chain: it needs no memory beyond what the store holds.
//
// Each transaction updates one account (about one in ten creates a new one),
// creates one or two notes with a tag drawn from TagSpace and some opaque
// details, and the block spends the even-indexed notes of the block
// SpendDelay back, which gives a steady stream of nullifiers.
package workload

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"storesync/block"
	"storesync/genesis"
	"storesync/merkle"
	"storesync/state"
)

// Shape of the synthetic workload.
const (
	// GenesisAccounts is how many accounts exist at genesis; large enough
	// that a `large` block mostly touches distinct accounts.
	GenesisAccounts = 4096
	// NewAccountsPerBlock are created by every block (deterministic ids).
	NewAccountsPerBlock = 8
	// TagSpace is the number of distinct note tags; SyncNotes filters by tag.
	TagSpace = 1024
	// SpendDelay: block n spends notes created in block n-SpendDelay.
	SpendDelay = 2
	minDetails = 48
	maxDetails = 192
)

// Profile sets the size of generated blocks.
type Profile struct {
	Name         string
	Transactions int
}

// Profiles by name.
var Profiles = []Profile{
	{Name: "small", Transactions: 16},
	{Name: "standard", Transactions: 256},
	{Name: "large", Transactions: 2048},
}

// ProfileByName returns the named profile.
func ProfileByName(name string) (Profile, error) {
	for _, p := range Profiles {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("unknown workload profile %q (want small, standard or large)", name)
}

// Keys are a chain's producer and prover private keys.
type Keys struct {
	Producer ed25519.PrivateKey
	Prover   ed25519.PrivateKey
}

// DevKeys derives deterministic keys from a seed, for tests, benchmarks and
// devnets. Real deployments generate random keys (primary init).
func DevKeys(seed uint64) Keys {
	k := func(role string) ed25519.PrivateKey {
		s := merkle.Sum(fmt.Appendf(nil, "storesync/devkey/%s/%d", role, seed))
		return ed25519.NewKeyFromSeed(s[:])
	}
	return Keys{Producer: k("producer"), Prover: k("prover")}
}

// AccountID is the id of the k-th account of a chain with this seed.
func AccountID(seed, k uint64) merkle.Hash {
	var b [24]byte
	copy(b[:], "acct")
	binary.LittleEndian.PutUint64(b[8:], seed)
	binary.LittleEndian.PutUint64(b[16:], k)
	return merkle.Sum(b[:])
}

// Genesis builds the genesis file of a synthetic chain.
func Genesis(chainID string, seed uint64, keys Keys, timestamp uint64) (*genesis.File, error) {
	accts := make([]genesis.Account, GenesisAccounts)
	for k := range accts {
		id := AccountID(seed, uint64(k))
		accts[k] = genesis.Account{ID: id, Commitment: merkle.Sum(id[:])}
	}
	return genesis.New(chainID, keys.Producer.Public().(ed25519.PublicKey), keys.Prover.Public().(ed25519.PublicKey), timestamp, accts)
}

// Nullifier is the nullifier that spends the note with this ID.
func Nullifier(noteID merkle.Hash) merkle.Hash {
	var b [4 + merkle.Size]byte
	copy(b[:], "null")
	copy(b[4:], noteID[:])
	return merkle.Sum(b[:])
}

// History gives the generator the blocks it spends notes from when they are
// not in its cache (after a restart). A store implements it.
type History interface {
	Block(n uint64) (*block.Block, error)
}

// Generator makes the blocks of one synthetic chain. Not safe for concurrent
// use; a producer owns one.
type Generator struct {
	seed    uint64
	profile Profile
	key     ed25519.PrivateKey
	history History
	notes   map[uint64][]merkle.Hash // note ids of recent blocks, for spending
}

// NewGenerator returns a generator for the chain of seed, signing with key.
func NewGenerator(seed uint64, p Profile, key ed25519.PrivateKey, h History) *Generator {
	return &Generator{seed: seed, profile: p, key: key, history: h, notes: map[uint64][]merkle.Hash{}}
}

// Next builds and signs the block after s with the given timestamp (unix ms).
func (g *Generator) Next(s *state.State, timestamp uint64) (*block.Block, error) {
	n := s.Header.Number + 1
	rng := rand.New(rand.NewPCG(g.seed, n))
	body := block.Body{Transactions: make([]block.TxHeader, 0, g.profile.Transactions)}
	current := map[merkle.Hash]merkle.Hash{} // account -> state within this block
	created := uint64(GenesisAccounts) + NewAccountsPerBlock*(n-1)
	var txid [16]byte
	for i := range g.profile.Transactions {
		var k uint64
		if i < NewAccountsPerBlock {
			k = created + uint64(i)
		} else {
			k = rng.Uint64N(created)
		}
		id := AccountID(g.seed, k)
		before, seen := current[id]
		if !seen {
			var err error
			if before, _, err = s.Accounts.TryGet(id); err != nil {
				return nil, fmt.Errorf("generate block %d: %w", n, err)
			}
		}
		binary.LittleEndian.PutUint64(txid[:], n)
		binary.LittleEndian.PutUint64(txid[8:], uint64(i))
		tx := block.TxHeader{ID: merkle.Join(merkle.Sum(txid[:]), id), Account: id, InitialState: before}
		tx.FinalState = merkle.Join(before, tx.ID)
		current[id] = tx.FinalState
		body.Transactions = append(body.Transactions, tx)
		for range 1 + rng.IntN(2) {
			d := make([]byte, minDetails+rng.IntN(maxDetails-minDetails+1))
			for j := 0; j < len(d); j += 8 {
				var w [8]byte
				binary.LittleEndian.PutUint64(w[:], rng.Uint64())
				copy(d[j:], w[:])
			}
			body.Notes = append(body.Notes, block.Note{Sender: id, Tag: uint32(rng.IntN(TagSpace)), Details: d})
		}
	}
	body.Accounts = make([]block.AccountUpdate, 0, len(current))
	for id, c := range current {
		body.Accounts = append(body.Accounts, block.AccountUpdate{ID: id, Commitment: c})
	}
	if n > SpendDelay {
		ids, err := g.noteIDs(n - SpendDelay)
		if err != nil {
			return nil, fmt.Errorf("generate block %d: %w", n, err)
		}
		for i := 0; i < len(ids); i += 2 {
			body.Nullifiers = append(body.Nullifiers, Nullifier(ids[i]))
		}
	}
	b, err := s.Build(body, timestamp, g.key)
	if err != nil {
		return nil, fmt.Errorf("generate block %d: %w", n, err)
	}
	g.notes[n] = b.NoteIDs()
	delete(g.notes, n-SpendDelay-1)
	return b, nil
}

func (g *Generator) noteIDs(n uint64) ([]merkle.Hash, error) {
	if ids, ok := g.notes[n]; ok {
		return ids, nil
	}
	if g.history == nil {
		return nil, fmt.Errorf("notes of block %d: not cached and no history", n)
	}
	b, err := g.history.Block(n)
	if err != nil {
		return nil, fmt.Errorf("notes of block %d: %w", n, err)
	}
	return b.NoteIDs(), nil
}
