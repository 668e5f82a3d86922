package merkle

import (
	"testing"

	"go.uber.org/goleak"
)

// Update may hash in helper goroutines; none may outlive the call.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
