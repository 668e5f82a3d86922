package flagenv

import (
	"flag"
	"io"
	"testing"
	"time"
)

func TestApply(t *testing.T) {
	t.Setenv("X_LISTEN", "127.0.0.1:9")
	t.Setenv("X_BLOCK_INTERVAL", "250ms")
	t.Setenv("X_SEED", "7")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:1", "")
	interval := fs.Duration("block-interval", time.Second, "")
	seed := fs.Uint64("seed", 1, "")
	other := fs.String("other", "keep", "")
	if err := fs.Parse([]string{"--seed", "3"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "X"); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:9" || *interval != 250*time.Millisecond || *seed != 3 || *other != "keep" {
		t.Fatalf("got listen=%s interval=%s seed=%d other=%s", *listen, *interval, *seed, *other)
	}
	t.Setenv("X_OTHER_BAD", "x")
	t.Setenv("X_BLOCK_INTERVAL", "soon")
	fs2 := flag.NewFlagSet("x", flag.ContinueOnError)
	fs2.SetOutput(io.Discard)
	fs2.Duration("block-interval", time.Second, "")
	_ = fs2.Parse(nil)
	if err := Apply(fs2, "X"); err == nil {
		t.Fatal("a bad value in the environment was accepted")
	}
}
