package replicas

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"storesync/internal/atomicfile"
)

// IDFile is the file in a store's data directory that holds its id.
const IDFile = "store-id"

// LoadID returns the id of the store whose data directory is dir, made
// (16 random bytes, hex) and written the first time: it stays the same for
// the life of the directory, so reports from it are known for the same
// store across restarts and address changes.
func LoadID(dir string) (string, error) {
	path := filepath.Join(dir, IDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if checkID("", id) != nil {
			return "", fmt.Errorf("store id in %s is malformed: %q (want 1 to %d letters, digits, '-' or '_'; delete the file to make a new one)", path, id, maxIDLen)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read store id: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write store id: %w", err)
	}
	if err := atomicfile.Write(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write store id %s: %w", path, err)
	}
	return id, nil
}
