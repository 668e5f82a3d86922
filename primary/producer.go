package primary

import (
	"context"
	"log/slog"
	"time"

	"storesync/otel"
	"storesync/store"
	"storesync/workload"
)

// produce commits one generated block per interval until ctx ends. A block
// that fails to apply (it cannot, short of a disk error) is logged and
// retried at the next tick with a fresh build.
func produce(ctx context.Context, st *store.Store, gen *workload.Generator, interval time.Duration, m *otel.Metrics, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sn := st.Snapshot()
		ts := max(uint64(time.Now().UnixMilli()), sn.State.Header.Timestamp)
		b, err := gen.Next(sn.State, ts)
		if err != nil {
			log.Error("build block", "block", sn.Committed()+1, "err", err)
			continue
		}
		r, err := st.ApplyBlock(context.WithoutCancel(ctx), b)
		if err != nil {
			log.Error("commit block", "block", b.Header.Number, "err", err)
			continue
		}
		m.Tips(st.Tips())
		m.Applied(r.Validate, r.Trees, r.BlockFile, r.SQLite, r.State, time.UnixMilli(int64(b.Header.Timestamp)))
		log.Info("committed", "block", r.Number, "txs", len(b.Body.Transactions), "bytes", r.Bytes,
			"apply_ms", float64((r.Validate+r.Trees+r.BlockFile+r.SQLite+r.State).Microseconds())/1000)
	}
}
