package cli

import (
	"flag"
	"io"
	"runtime/debug"
	"testing"

	"storesync/store"
)

// TestMemoryLimit: --memory-limit takes MiB, 0 (derived from the caches and
// the window) or -1 (none), refuses anything else by name, and sets the Go
// heap limit it reports.
func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	parse := func(args ...string) (int64, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		mib := MemoryFlag(fs)
		return *mib, fs.Parse(args)
	}
	for _, bad := range []string{"-2", "lots", "1.5", "2199023255553"} {
		if _, err := parse("--memory-limit", bad); err == nil {
			t.Errorf("--memory-limit %s accepted", bad)
		}
	}
	o := store.Options{NodeCacheBytes: 100 << 20}
	for _, tc := range []struct {
		args []string
		want int64
	}{
		{nil, store.MemoryLimit(o, 32<<20)},
		{[]string{"--memory-limit", "0"}, store.MemoryLimit(o, 32<<20)},
		{[]string{"--memory-limit", "900"}, 900 << 20},
		{[]string{"--memory-limit", "-1"}, 0},
	} {
		mib, err := parse(tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		debug.SetMemoryLimit(before)
		got := SetMemoryLimit(mib, o, 32<<20)
		if got != tc.want {
			t.Errorf("%v: limit %d, want %d", tc.args, got, tc.want)
		}
		if now := debug.SetMemoryLimit(-1); (got > 0 && now != got) || (got == 0 && now != before) {
			t.Errorf("%v: runtime limit %d after setting %d", tc.args, now, got)
		}
	}
	t.Setenv("GOMEMLIMIT", "2GiB")
	if got := SetMemoryLimit(0, o, 0); got != 0 {
		t.Errorf("with GOMEMLIMIT set, the derived limit %d replaced it", got)
	}
	if want := int64(2*100<<20 + 32<<20 + memoryOverheadForTest); store.MemoryLimit(o, 32<<20) != want {
		t.Errorf("derived limit %d, want twice the node cache plus the window plus 256 MiB (%d)", store.MemoryLimit(o, 32<<20), want)
	}
}

const memoryOverheadForTest = 256 << 20
