package health

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"storesync/api/storev1"
	"storesync/block"
)

// headerSource answers GetBlockHeaderByNumber with a header of tip named
// by key (fails when err is set); every other call is left unimplemented.
type headerSource struct {
	storev1.StoreClient
	tip uint64
	key ed25519.PublicKey
	err error
}

func (s *headerSource) GetBlockHeaderByNumber(context.Context, *storev1.BlockHeaderByNumberRequest, ...grpc.CallOption) (*storev1.BlockHeaderResponse, error) {
	if s.err != nil {
		return nil, s.err
	}
	h := block.Header{Number: s.tip}
	copy(h.ProducerKey[:], s.key)
	return &storev1.BlockHeaderResponse{Header: h.Encode()}, nil
}

// TestOnTipGetsCountedTips: OnTip is told each tip the poller counts, by
// source, and nothing of a source whose tip does not count; it runs outside
// the poller's lock (it may read the poller).
func TestOnTipGetsCountedTips(t *testing.T) {
	producer, _, _ := ed25519.GenerateKey(nil)
	other, _, _ := ed25519.GenerateKey(nil)
	sources := []Source{
		{Name: "good", Client: &headerSource{tip: 101, key: producer}},
		{Name: "forged", Client: &headerSource{tip: 102, key: other}},
		{Name: "down", Client: &headerSource{err: errors.New("unreachable")}},
	}
	p := NewPoller(sources, producer, func() uint64 { return 100 }, time.Second, DefaultConfig, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	var mu sync.Mutex
	got := map[string]uint64{}
	p.OnTip = func(name string, tip uint64) {
		_ = p.Problems() // deadlocks if called under the lock
		mu.Lock()
		defer mu.Unlock()
		got[name] = tip
	}
	p.Step(context.Background())
	if len(got) != 1 || got["good"] != 101 {
		t.Fatalf("OnTip told %v, want only good at 101", got)
	}
}
