package primary

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"storesync/genesis"
	"storesync/workload"
)

// Files in a primary's data directory besides the store.
const (
	GenesisFile  = "genesis.json"
	ProducerFile = "producer.key"
	ProverFile   = "prover.key"
	StoreDir     = "store"
)

// Init creates a primary's data directory: fresh random producer and prover
// keys and a genesis file with the workload's initial accounts for seed. It
// refuses to overwrite an existing genesis.
func Init(dir, chainID string, seed uint64) (*genesis.File, error) {
	if _, err := os.Stat(filepath.Join(dir, GenesisFile)); err == nil {
		return nil, fmt.Errorf("init %s: %s already exists; remove the directory to start a new chain", dir, GenesisFile)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	var keys workload.Keys
	for _, k := range []*ed25519.PrivateKey{&keys.Producer, &keys.Prover} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		*k = priv
	}
	g, err := workload.Genesis(chainID, seed, keys, uint64(time.Now().UnixMilli()))
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if err := writeKey(filepath.Join(dir, ProducerFile), keys.Producer); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, ProverFile), keys.Prover); err != nil {
		return nil, err
	}
	if err := g.Save(filepath.Join(dir, GenesisFile)); err != nil {
		return nil, err
	}
	return g, nil
}

// writeKey stores a private key seed as hex, readable by the owner only.
func writeKey(path string, k ed25519.PrivateKey) error {
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// ReadKey loads a key written by Init.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("read key %s: want %d hex-encoded bytes", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// checkKey checks that key is the one genesis names.
func checkKey(path string, key ed25519.PrivateKey, want []byte) error {
	if !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(want)) {
		return errors.New("key " + path + " is not the key the genesis file names")
	}
	return nil
}
