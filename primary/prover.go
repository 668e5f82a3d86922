package primary

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"time"

	"storesync/block"
	"storesync/otel"
	"storesync/store"
)

// proveDue is when block n may be proven: its timestamp plus the delay,
// plus or minus a jitter drawn from the seed, so a run is reproducible.
func proveDue(seed, n, timestampMs uint64, delay, jitter time.Duration) time.Time {
	d := delay
	if jitter > 0 {
		r := rand.New(rand.NewPCG(seed, n^0x9e3779b97f4a7c15))
		d += time.Duration(r.Int64N(int64(2*jitter+1))) - jitter
	}
	return time.UnixMilli(int64(timestampMs)).Add(max(d, 0))
}

// prove proves committed blocks strictly in order, each no earlier than its
// due time, until ctx ends.
func prove(ctx context.Context, st *store.Store, key ed25519.PrivateKey, seed uint64, delay, jitter time.Duration, m *otel.Metrics, log *slog.Logger) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		changed := st.Changed()
		sn := st.Snapshot()
		n := sn.Proven + 1
		if n > sn.Committed() {
			select { // wait for the next commit
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		h, err := sn.Header(ctx, n)
		if err != nil {
			log.Error("prove: read header", "block", n, "err", err)
			if !pause(ctx, timer, retryAfter) {
				return
			}
			continue
		}
		if !pause(ctx, timer, time.Until(proveDue(seed, n, h.Timestamp, delay, jitter))) {
			return
		}
		p := block.Prove(key, n, h.Commitment())
		if err := st.ApplyProof(context.WithoutCancel(ctx), n, p.Encode()); err != nil {
			log.Error("apply proof", "block", n, "err", err)
			if !pause(ctx, timer, retryAfter) {
				return
			}
			continue
		}
		m.Tips(st.Tips())
		log.Debug("proven", "block", n)
	}
}

// retryAfter spaces out retries after an I/O error.
const retryAfter = time.Second

// pause waits d on timer; false if ctx ended first.
func pause(ctx context.Context, timer *time.Timer, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
