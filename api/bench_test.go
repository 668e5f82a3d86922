package api_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"storesync/api/storev1"
	"storesync/merkle"
)

// BenchmarkReadAPI measures requests/s over real gRPC on loopback, with 16
// concurrent clients sharing one connection (as a load balancer would).
func BenchmarkReadAPI(b *testing.B) {
	f := newFixture(b)
	var ids []merkle.Hash
	for _, blk := range f.chain.Blocks {
		for _, u := range blk.Body.Accounts {
			ids = append(ids, u.ID)
		}
	}
	calls := []struct {
		name string
		call func(ctx context.Context, r *rand.Rand) error
	}{
		{"GetBlockByNumber", func(ctx context.Context, r *rand.Rand) error {
			_, err := f.client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: 1 + r.Uint64N(10), IncludeProof: true})
			return err
		}},
		{"GetAccount", func(ctx context.Context, r *rand.Rand) error {
			id := ids[r.IntN(len(ids))]
			_, err := f.client.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: id[:]})
			return err
		}},
	}
	for _, c := range calls {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 0))
				ctx := context.Background()
				for pb.Next() {
					if err := c.call(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
