package api_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"storesync/api"
)

// TestHoldReleasedAt: the answer to a call that was held says when the
// server released it (at the commit it waited for, within the call); an
// answer given at once, held or not asked, says nothing.
func TestHoldReleasedAt(t *testing.T) {
	f := newHoldFixture(t, 5, api.HoldConfig{MaxWait: 20 * time.Second})
	c := f.dial(t)
	for _, kind := range []string{"", api.HoldBlock} {
		a := <-ask(context.Background(), c, 5, kind, 10*time.Second)
		if a.err != nil || a.mb.Block == nil {
			t.Fatalf("hold %q of a block already there: %v", kind, a.err)
		}
		if got := a.header.Get(api.ReleasedAtKey); len(got) != 0 {
			t.Fatalf("hold %q answered at once: %s = %q, want none", kind, api.ReleasedAtKey, got)
		}
	}
	launched := time.Now()
	held := ask(context.Background(), c, 6, api.HoldBlock, 10*time.Second)
	waitHeld(t, f.holds, 1)
	committing := time.Now()
	if _, err := f.st.ApplyBlock(context.Background(), f.chain.Blocks[5]); err != nil {
		t.Fatal(err)
	}
	a := <-held
	answered := time.Now()
	if a.err != nil || a.mb.Block == nil {
		t.Fatalf("held call: %v", a.err)
	}
	got := a.header.Get(api.ReleasedAtKey)
	if len(got) != 1 {
		t.Fatalf("held call: %s = %q, want one value", api.ReleasedAtKey, got)
	}
	us, err := strconv.ParseInt(got[0], 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", api.ReleasedAtKey, got[0], err)
	}
	released := time.UnixMicro(us)
	// Same clock here: the release lies between the commit's start and the
	// answer, microseconds rounded down.
	if released.Before(committing.Truncate(time.Microsecond)) || released.After(answered) {
		t.Fatalf("released at %s; want within [%s, %s] (launched %s)", released.Format(time.StampMicro),
			committing.Format(time.StampMicro), answered.Format(time.StampMicro), launched.Format(time.StampMicro))
	}
	t.Logf("held %s, released %s after the commit began, answered %s after the release",
		committing.Sub(launched).Round(time.Millisecond), released.Sub(committing).Round(time.Microsecond), answered.Sub(released).Round(time.Microsecond))
}
