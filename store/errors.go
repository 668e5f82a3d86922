package store

import "errors"

var (
	// ErrNotFound: the block, proof, account or note is not in this store (yet).
	ErrNotFound = errors.New("not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrProofOrder: proofs are applied strictly in order, one past the proven tip.
	ErrProofOrder = errors.New("proof out of order")
	// ErrProofAhead: a proof for a block that is not committed here yet.
	ErrProofAhead = errors.New("proof past the committed tip")
	// ErrDamaged: Open found damage it cannot repair by itself; the error names
	// the file and the block.
	ErrDamaged = errors.New("store damaged")
	// ErrSnapshotGone: a reader held its snapshot so long that the tree
	// nodes of its version were deleted; a new snapshot answers.
	ErrSnapshotGone = errors.New("snapshot too old")
	// ErrStaleGroup: a group was staged on one that did not commit (or on a
	// state a later write replaced): nothing of it was committed; stage its
	// blocks again.
	ErrStaleGroup = errors.New("staged on a group that did not commit")
	// ErrGenesis: the data directory belongs to another chain.
	ErrGenesis = errors.New("genesis mismatch")
)

// StorageError is a write the disk refused (full, read-only, failing):
// nothing was committed, every medium is as it was before the call, and the
// same call succeeds once the disk takes writes again. It is never the
// block's fault. Reason is the cause in a few words ("no space left on
// device"), for health reports.
type StorageError struct {
	Op     string // what was being written, e.g. "apply block 7: block file"
	Reason string
	Err    error
}

func (e *StorageError) Error() string { return e.Op + ": " + e.Err.Error() }

func (e *StorageError) Unwrap() error { return e.Err }
