package runtime

import (
	"context"
	"fmt"
	"time"

	"storesync/health"
)

// progressEvery is how often a follower that is behind says how far it got.
const progressEvery = 5 * time.Second

// progress remembers the last progress line, for the rate.
type progress struct {
	at    time.Time
	tip   uint64
	shown bool
}

// onVerdict runs after every health evaluation: it moves readiness, the
// readiness and lag metrics and, while catching up, the progress line.
func (f *Follower) onVerdict(v health.Verdict, _ bool) {
	v = f.withStorage(v)
	f.metrics.Readiness(v.Ready, f.cfg.Health.MaxLag, f.engine != nil && f.engine.StorageFault() != "")
	// The Applier logs a storage fault and its end; the poller, its own flips.
	if v.Ready != f.serving || f.progress.at.IsZero() {
		f.setServing(v.Ready)
		f.serving = v.Ready
	}
	var age time.Duration
	if v.LagKnown && v.Lag > 0 {
		if h, err := f.st.Snapshot().Header(context.Background(), v.Local); err == nil {
			age = time.Since(time.UnixMilli(int64(h.Timestamp)))
		}
	}
	f.metrics.Lag(v.LagKnown, v.Lag, age)
	now := v.Evaluated
	if f.progress.at.IsZero() {
		f.progress = progress{at: now, tip: v.Local}
		return
	}
	if now.Sub(f.progress.at) < progressEvery {
		return
	}
	behind := v.LagKnown && v.Lag > f.cfg.Health.MaxLag
	if behind {
		f.cfg.Log.Info(progressLine(v.Local, v.ChainTip, v.Local-f.progress.tip, now.Sub(f.progress.at)))
		f.progress.shown = true
	} else if f.progress.shown && v.LagKnown {
		f.cfg.Log.Info(fmt.Sprintf("caught up at block %d", v.Local))
		f.progress.shown = false
	}
	f.progress.at, f.progress.tip = now, v.Local
}

// progressLine is e.g. "synced 12,345/50,000 (24.7%) 850 blocks/s ETA 44s".
func progressLine(done, total, step uint64, over time.Duration) string {
	rate := float64(step) / over.Seconds()
	eta := "unknown"
	if rate > 0 && total > done {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	return fmt.Sprintf("synced %s/%s (%.1f%%) %.0f blocks/s ETA %s", commas(done), commas(total), pct, rate, eta)
}

func commas(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
