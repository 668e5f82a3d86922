package genesis_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"storesync/genesis"
	"storesync/workload"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	keys := workload.DevKeys(1)
	g, err := workload.Genesis("test", 1, keys, 1000)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "genesis.json")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := genesis.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commitment != g.Commitment || got.Block().Header != g.Block().Header {
		t.Fatal("genesis does not round-trip")
	}
	other, _ := workload.Genesis("other", 1, keys, 1000)
	if other.Commitment == g.Commitment {
		t.Fatal("chain id does not change the genesis commitment")
	}
}

func TestLoadRejectsEdits(t *testing.T) {
	keys := workload.DevKeys(1)
	g, err := workload.Genesis("test", 1, keys, 1000)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "genesis.json")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	cases := []struct {
		name, from, to, want string
	}{
		{"chain id edited", `"chain_id": "test"`, `"chain_id": "tesT"`, "does not match"},
		{"timestamp edited", `"timestamp": 1000`, `"timestamp": 1001`, "does not match"},
		{"unknown field", `"chain_id"`, `"extra": 1, "chain_id"`, "unknown field"},
		{"short key", `"producer_key": "`, `"producer_key": "00`, "key"},
		{"empty chain id", `"chain_id": "test"`, `"chain_id": ""`, "chain_id is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edited := strings.Replace(string(data), tc.from, tc.to, 1)
			if edited == string(data) {
				t.Fatalf("edit %q not applied", tc.from)
			}
			p := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := genesis.Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
