package replicas

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadIDCreatesAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "store") // made if missing
	id, err := LoadID(dir)
	if err != nil {
		t.Fatalf("LoadID: %v", err)
	}
	if len(id) != 32 {
		t.Fatalf("id %q has %d characters, want 32", id, len(id))
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		t.Fatalf("id %q is not lowercase hex", id)
	}
	b, err := os.ReadFile(filepath.Join(dir, IDFile))
	if err != nil {
		t.Fatalf("id file: %v", err)
	}
	if string(b) != id+"\n" {
		t.Fatalf("id file holds %q, want %q", b, id+"\n")
	}
	if _, err := os.Stat(filepath.Join(dir, IDFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	again, err := LoadID(dir)
	if err != nil || again != id {
		t.Fatalf("second LoadID = %q, %v; want %q", again, err, id)
	}
	other, err := LoadID(t.TempDir())
	if err != nil || other == id {
		t.Fatalf("another directory got %q, %v; want a new id", other, err)
	}
}

func TestLoadIDReadsWrittenID(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IDFile), []byte("  edge-1_B \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id, err := LoadID(dir); err != nil || id != "edge-1_B" {
		t.Fatalf("LoadID = %q, %v; want edge-1_B", id, err)
	}
}

func TestLoadIDMalformed(t *testing.T) {
	for name, content := range map[string]string{
		"spaces":   "not an id!\n",
		"empty":    "",
		"blank":    " \n",
		"slash":    "abc/def",
		"too long": strings.Repeat("a", maxIDLen+1),
		"two ids":  "abc\ndef\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, IDFile)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			id, err := LoadID(dir)
			if err == nil {
				t.Fatalf("LoadID accepted %q as %q", content, id)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Fatalf("the malformed file was changed to %q", b)
			}
		})
	}
}

func TestLoadIDUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, IDFile), 0o755); err != nil { // a directory, not a file
		t.Fatal(err)
	}
	if id, err := LoadID(dir); err == nil {
		t.Fatalf("LoadID = %q, want an error", id)
	}
	if fi, err := os.Stat(filepath.Join(dir, IDFile)); err != nil || !fi.IsDir() {
		t.Fatalf("LoadID replaced what was there: %v", err)
	}
}
