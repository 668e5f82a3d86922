// Package atomicfile writes small files that must never be seen half
// written: the genesis file, a store's id.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to path durably and atomically: to a file beside it,
// synced, renamed over path, and the directory synced, so that after a
// crash path holds either what it held before or all of data.
func Write(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
