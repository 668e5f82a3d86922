package cli

import (
	"flag"
	"io"
	"runtime/debug"
	"testing"

	"storesync/merkle"
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
	if want := 2*100<<20 + 2*merkle.PinnedBytes(merkle.DefaultPinLevels) + 32<<20 + memoryOverheadForTest; store.MemoryLimit(o, 32<<20) != want {
		t.Errorf("derived limit %d, want twice the node cache, both trees' pinned levels, the window and 256 MiB (%d)", store.MemoryLimit(o, 32<<20), want)
	}
	o.PinnedLevels = 12
	if want := 2*100<<20 + 2*merkle.PinnedBytes(12) + memoryOverheadForTest; store.MemoryLimit(o, 0) != want {
		t.Errorf("derived limit with 12 pinned levels %d, want %d", store.MemoryLimit(o, 0), want)
	}
}

// parseStoreFlags parses args with only the store's flags registered.
func parseStoreFlags(args ...string) (store.Options, error) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o store.Options
	StoreFlags(fs, &o)
	return o, fs.Parse(args)
}

// TestPinnedLevelsFlag: --pinned-levels defaults to the store's default,
// takes a level count from 1 to the maximum, and refuses anything else.
func TestPinnedLevelsFlag(t *testing.T) {
	parse := parseStoreFlags
	if o, err := parse(); err != nil || o.PinnedLevels != merkle.DefaultPinLevels {
		t.Fatalf("default: %d, %v; want %d", o.PinnedLevels, err, merkle.DefaultPinLevels)
	}
	if o, err := parse("--pinned-levels", "18"); err != nil || o.PinnedLevels != 18 {
		t.Fatalf("--pinned-levels 18: %d, %v", o.PinnedLevels, err)
	}
	for _, bad := range []string{"0", "-1", "25", "many"} {
		if _, err := parse("--pinned-levels", bad); err == nil {
			t.Errorf("--pinned-levels %s accepted", bad)
		}
	}
}

// TestRecordLevelsFlag: --record-levels defaults to the store's default,
// takes a level count from 1 to the maximum, and refuses anything else.
func TestRecordLevelsFlag(t *testing.T) {
	parse := parseStoreFlags
	if o, err := parse(); err != nil || o.RecordLevels != store.DefaultOptions.RecordLevels {
		t.Fatalf("default: %d, %v; want %d", o.RecordLevels, err, store.DefaultOptions.RecordLevels)
	}
	if o, err := parse("--record-levels", "3"); err != nil || o.RecordLevels != 3 {
		t.Fatalf("--record-levels 3: %d, %v", o.RecordLevels, err)
	}
	for _, bad := range []string{"0", "-1", "9", "many"} {
		if _, err := parse("--record-levels", bad); err == nil {
			t.Errorf("--record-levels %s accepted", bad)
		}
	}
}

const memoryOverheadForTest = 256 << 20
