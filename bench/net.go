package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"storesync/block"
	"storesync/primary"
	"storesync/store"
	"storesync/workload"
)

// link is a toxiproxy between a client and a store, adding rtt/2 of latency
// (with 5% jitter) in each direction.
type link struct{ proxy *toxiproxy.Proxy }

func newLink(target string, rtt time.Duration) (*link, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "upstream", "127.0.0.1:0", target)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy: %w", err)
	}
	if half := rtt.Milliseconds() / 2; half > 0 {
		for _, stream := range []string{"upstream", "downstream"} {
			t := fmt.Sprintf(`{"type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":%d}}`, stream, half, max(half/20, 1))
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(t)); err != nil {
				p.Stop()
				return nil, fmt.Errorf("toxiproxy latency: %w", err)
			}
		}
	}
	return &link{proxy: p}, nil
}

func (l *link) addr() string { return l.proxy.Listen }
func (l *link) close()       { l.proxy.Stop() }

// servedChain is a primary (not producing) preloaded with a chain and all
// its proofs, serving its read API on loopback.
type servedChain struct {
	chain  *workload.Chain
	dir    string
	node   *primary.Node
	cancel context.CancelFunc
	done   chan error
	bytes  int
}

func serveChain(dir string, c *workload.Chain) (*servedChain, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := c.Genesis.Save(filepath.Join(dir, primary.GenesisFile)); err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(dir, primary.StoreDir), c.Genesis)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	s := &servedChain{chain: c, dir: dir}
	for i, b := range c.Blocks {
		r, err := st.ApplyBlock(ctx, b)
		if err != nil {
			st.Close()
			return nil, err
		}
		s.bytes += r.Bytes
		n := uint64(i + 1)
		if err := st.ApplyProof(ctx, n, block.Prove(c.Keys.Prover, n, c.States[n].Commitment).Encode()); err != nil {
			st.Close()
			return nil, err
		}
	}
	st.Close()
	s.node, err = primary.New(primary.Config{DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0",
		Profile: "standard", ShutdownGrace: time.Second, Log: quiet})
	if err != nil {
		return nil, err
	}
	var rctx context.Context
	rctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan error, 1)
	go func() { s.done <- s.node.Run(rctx) }()
	return s, nil
}

func (s *servedChain) genesisPath() string { return filepath.Join(s.dir, primary.GenesisFile) }

func (s *servedChain) stop() { s.cancel(); <-s.done }
