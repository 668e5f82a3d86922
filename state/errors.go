package state

import (
	"errors"
	"fmt"
)

// Check names one validation rule of ApplyBlock.
type Check string

// The checks, in the order they run: cheap and structural first, tree work last.
const (
	CheckDecode          Check = "decode"
	CheckVersion         Check = "version"
	CheckNumber          Check = "number"
	CheckPrevCommitment  Check = "previous commitment"
	CheckTimestamp       Check = "timestamp"
	CheckSignature       Check = "signature"
	CheckTxCommitment    Check = "transaction commitment"
	CheckNoteRoot        Check = "note root"
	CheckBody            Check = "body"
	CheckDoubleSpend     Check = "double spend"
	CheckAccountRoot     Check = "account root"
	CheckNullifierRoot   Check = "nullifier root"
	CheckChainCommitment Check = "chain commitment"
)

// Checks lists every check, in the order they run: the values a
// RejectError's Check takes (metrics export one series per check from the
// start).
var Checks = []Check{
	CheckDecode, CheckVersion, CheckNumber, CheckPrevCommitment, CheckTimestamp, CheckSignature,
	CheckTxCommitment, CheckNoteRoot, CheckBody, CheckDoubleSpend, CheckAccountRoot, CheckNullifierRoot,
	CheckChainCommitment,
}

// Sentinels, one per check, so callers can match with errors.Is.
var (
	ErrRejected        = errors.New("block rejected")
	ErrDecode          = errors.New("block does not decode")
	ErrVersion         = errors.New("unsupported block version")
	ErrNumber          = errors.New("wrong block number")
	ErrPrevCommitment  = errors.New("wrong previous commitment")
	ErrTimestamp       = errors.New("timestamp before previous block")
	ErrSignature       = errors.New("bad producer signature")
	ErrTxCommitment    = errors.New("transaction commitment mismatch")
	ErrNoteRoot        = errors.New("note root mismatch")
	ErrBody            = errors.New("non-canonical body")
	ErrDoubleSpend     = errors.New("nullifier spent twice")
	ErrAccountRoot     = errors.New("account root mismatch")
	ErrNullifierRoot   = errors.New("nullifier root mismatch")
	ErrChainCommitment = errors.New("chain commitment mismatch")
)

var sentinels = map[Check]error{
	CheckDecode: ErrDecode, CheckVersion: ErrVersion, CheckNumber: ErrNumber,
	CheckPrevCommitment: ErrPrevCommitment, CheckTimestamp: ErrTimestamp, CheckSignature: ErrSignature,
	CheckTxCommitment: ErrTxCommitment, CheckNoteRoot: ErrNoteRoot, CheckBody: ErrBody,
	CheckDoubleSpend: ErrDoubleSpend, CheckAccountRoot: ErrAccountRoot, CheckNullifierRoot: ErrNullifierRoot,
	CheckChainCommitment: ErrChainCommitment,
}

// RejectError is the error of a block that failed validation. Nothing was
// changed when it is returned.
type RejectError struct {
	Number uint64 // the block's number (the expected one when it did not decode)
	Check  Check
	Reason string
	Cause  error // underlying error, if any
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("reject block %d: %s: %s", e.Number, e.Check, e.Reason)
}

// Unwrap exposes ErrRejected, the check's sentinel and the cause.
func (e *RejectError) Unwrap() []error {
	errs := []error{ErrRejected, sentinels[e.Check]}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

func reject(n uint64, c Check, format string, args ...any) *RejectError {
	return &RejectError{Number: n, Check: c, Reason: fmt.Sprintf(format, args...)}
}

// Rejection returns the RejectError in err's chain, or nil.
func Rejection(err error) *RejectError {
	var r *RejectError
	if errors.As(err, &r) {
		return r
	}
	return nil
}
