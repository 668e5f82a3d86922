package cli

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestTraceSample: --trace-sample takes a ratio from 0 to 1 (default 1)
// and refuses anything else, the flag named in the error.
func TestTraceSample(t *testing.T) {
	parse := func(args ...string) (float64, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		r := SampleFlag(fs)
		err := fs.Parse(args)
		return *r, err
	}
	for _, tc := range []struct {
		args []string
		want float64
	}{{nil, 1}, {[]string{"--trace-sample", "0"}, 0}, {[]string{"--trace-sample", "0.25"}, 0.25}, {[]string{"--trace-sample=1"}, 1}} {
		got, err := parse(tc.args...)
		if err != nil || got != tc.want {
			t.Errorf("%v: %v, %v; want %v", tc.args, got, err, tc.want)
		}
	}
	for _, bad := range []string{"-0.1", "1.5", "NaN", "half", "", "Inf"} {
		_, err := parse("--trace-sample", bad)
		if err == nil || !strings.Contains(err.Error(), "trace-sample") || !strings.Contains(err.Error(), "0 to 1") {
			t.Errorf("--trace-sample %q: err %v, want one naming the flag and the range", bad, err)
		}
	}
}

// TestFlushDeadline: the last spans get what is left of the grace after
// the shutdown began, and at least minFlush however long the node's own
// shutdown took.
func TestFlushDeadline(t *testing.T) {
	stop := time.Unix(1000, 0)
	if got := FlushDeadline(stop, 5*time.Second, stop.Add(time.Second)); !got.Equal(stop.Add(5 * time.Second)) {
		t.Errorf("1 s into a 5 s grace: deadline %s after the stop, want 5 s", got.Sub(stop))
	}
	now := stop.Add(6 * time.Second)
	if got := FlushDeadline(stop, 5*time.Second, now); !got.Equal(now.Add(minFlush)) {
		t.Errorf("grace used up: deadline %s from now, want %s", got.Sub(now), minFlush)
	}
	if got := FlushDeadline(time.Time{}, 5*time.Second, now); !got.Equal(now.Add(minFlush)) {
		t.Errorf("no stop recorded: deadline %s from now, want %s", got.Sub(now), minFlush)
	}
}
