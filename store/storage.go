package store

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mattn/go-sqlite3"
)

// storageReasons name the causes of a refused write, as the kernel reports
// them to the block files and to SQLite.
var storageReasons = map[syscall.Errno]string{
	syscall.ENOSPC: "no space left on device",
	syscall.EDQUOT: "disk quota exceeded",
	syscall.EROFS:  "read-only file system",
	syscall.EIO:    "input/output error",
	syscall.EACCES: "permission denied",
	syscall.EPERM:  "operation not permitted",
	syscall.EFBIG:  "file too large",
}

// sqliteReasons: SQLite's codes for the same causes, when it names no errno.
var sqliteReasons = map[sqlite3.ErrNo]string{
	sqlite3.ErrFull:     "no space left on device",
	sqlite3.ErrReadonly: "read-only database",
	sqlite3.ErrIoErr:    "disk I/O error",
	sqlite3.ErrPerm:     "permission denied",
	sqlite3.ErrCantOpen: "unable to open database file",
}

// storageReason says whether err is the disk refusing a write, and why.
func storageReason(err error) (string, bool) {
	var se sqlite3.Error
	if errors.As(err, &se) {
		if r, ok := storageReasons[se.SystemErrno]; ok {
			return r, true
		}
		r, ok := sqliteReasons[se.Code]
		return r, ok
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r, ok := storageReasons[errno]
		return r, ok
	}
	return "", false
}

// storageErr wraps err as a *StorageError when the disk refused a write,
// and with the operation only otherwise (a logic error stays one).
func storageErr(op string, err error) error {
	if r, ok := storageReason(err); ok {
		return &StorageError{Op: op, Reason: r, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// StorageFault reports whether err is the disk refusing a write (see
// StorageError), with the cause in a few words.
func StorageFault(err error) (reason string, ok bool) {
	var se *StorageError
	if errors.As(err, &se) {
		return se.Reason, true
	}
	return "", false
}
