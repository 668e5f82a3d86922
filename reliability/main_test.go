package reliability

import (
	"os"
	"testing"
)

// full reports whether the long form was asked for (make test-reliability).
func full() bool { return os.Getenv("STORESYNC_RELIABILITY") == "full" }

// scaled is short in the default suite and long under make test-reliability.
func scaled[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
