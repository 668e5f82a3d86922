package workload

import (
	"fmt"

	"storesync/block"
	"storesync/genesis"
	"storesync/state"
)

// Chain is a synthetic chain built in memory: its genesis, keys and blocks
// 1..len(Blocks) (Blocks[i] is block i+1), with the state after each.
type Chain struct {
	Genesis *genesis.File
	Keys    Keys
	Blocks  []*block.Block
	States  []*state.State // States[i]: after block i (States[0] is genesis)
}

// GenesisTime is the genesis timestamp of chains built here (unix ms), so
// that they are identical run after run.
const GenesisTime = 1_767_225_600_000 // 2026-01-01T00:00:00Z

// BuildChain makes n blocks of profile p for the chain of seed, one
// intervalMs apart. Tests and benchmarks feed these to stores.
func BuildChain(seed uint64, p Profile, n int, intervalMs uint64) (*Chain, error) {
	keys := DevKeys(seed)
	g, err := Genesis(fmt.Sprintf("dev-%d", seed), seed, keys, GenesisTime)
	if err != nil {
		return nil, err
	}
	c := &Chain{Genesis: g, Keys: keys, States: []*state.State{state.Genesis(g)}}
	gen := NewGenerator(seed, p, keys.Producer, nil)
	rules := state.RulesOf(g)
	for i := range n {
		s := c.States[i]
		b, err := gen.Next(s, s.Header.Timestamp+intervalMs)
		if err != nil {
			return nil, err
		}
		a, err := s.Apply(b, rules)
		if err != nil {
			return nil, fmt.Errorf("build chain: generated block %d does not apply: %w", b.Header.Number, err)
		}
		c.Blocks = append(c.Blocks, b)
		c.States = append(c.States, a.State)
	}
	return c, nil
}
