package sim

import (
	"fmt"
	"io"
	"time"
)

// Honest is an upstream that answers every call after rtt (plus up to a
// fifth of it as jitter) over a 100 MB/s link.
func Honest(name string, of int, rtt time.Duration) Link {
	return Link{Name: name, Of: of, RTT: rtt, Jitter: rtt / 5, Bandwidth: 100e6}
}

// Holding is an Honest upstream that holds calls which ask, up to 30 s
// (the read API's default maximum).
func Holding(name string, of int, rtt time.Duration) Link {
	l := Honest(name, of, rtt)
	l.HoldMax = 30 * time.Second
	return l
}

// Stalling answers like Honest but holds one call in `every` for `stall`.
func Stalling(name string, of int, rtt time.Duration, every int, stall time.Duration) Link {
	l := Honest(name, of, rtt)
	l.StallRate, l.StallFor = 1/float64(every), stall
	return l
}

// Base is a deployment of one follower of the primary over 10 ms, blocks
// every interval, proofs delay ± 25% behind, caught up after a short
// catch-up of 20 blocks.
func Base(seed uint64, blocks int, interval, delay time.Duration) Config {
	return Config{Seed: seed, Blocks: blocks, Prefix: 20, BlockInterval: interval, ProofDelay: delay, ProofJitter: delay / 4,
		ProveWork: 3 * time.Millisecond,
		Followers: []FollowerSpec{{Upstreams: []Link{Honest("primary", -1, 10*time.Millisecond)}}},
		Settle:    10 * time.Second}
}

// Condition is a named deployment.
type Condition struct {
	Name string
	Cfg  Config
}

// Conditions is the grid of deployments the simulator's table and tests
// run, for one seed: proof delays from 0 to 60 s with ±25% jitter at block
// intervals from 0.25 to 5 s; an honest upstream beside one that stalls 1
// call in 30 for 20 s, or is 10x slower, or lies, or goes away; a chain of
// followers; a long catch-up; and the naive loop where it compares. blocks
// sizes each run (the larger grid runs more).
func Conditions(seed uint64, blocks int) []Condition {
	var cs []Condition
	add := func(name string, c Config) { cs = append(cs, Condition{Name: name, Cfg: c}) }
	for _, iv := range []time.Duration{250 * time.Millisecond, time.Second, 5 * time.Second} {
		for _, d := range []time.Duration{0, 2 * time.Second, 6 * time.Second, 30 * time.Second, 60 * time.Second} {
			add(fmt.Sprintf("proofs %s ±25%% behind %s blocks", d, iv), Base(seed, blocks, iv, d))
		}
	}
	for _, d := range []time.Duration{2 * time.Second, 30 * time.Second} {
		c := Base(seed, blocks, 5*time.Second, d)
		c.Naive = true
		add(fmt.Sprintf("naive loop: proofs %s ±25%% behind 5s blocks", d), c)
	}
	two := func(name string, b Link) {
		c := Base(seed, blocks, time.Second, 6*time.Second)
		c.Followers[0].Upstreams = append(c.Followers[0].Upstreams, b)
		add(name, c)
	}
	two("two honest upstreams", Honest("b", -1, 10*time.Millisecond))
	two("one upstream stalls 1 call in 30 for 20s", Stalling("staller", -1, 10*time.Millisecond, 30, 20*time.Second))
	slow := Honest("slow", -1, 100*time.Millisecond)
	slow.Bandwidth = 10e6
	two("one upstream 10x slower", slow)
	for _, lie := range []struct {
		name string
		kind Lie
	}{{"bad signatures", LieSignature}, {"blocks that fail ApplyBlock", LieState}, {"bad proofs", LieProof}, {"false empty answers", LieEmpty}} {
		l := Honest("liar", -1, 10*time.Millisecond)
		l.LieRate, l.Lie = 0.2, lie.kind
		two("one upstream lies 1 call in 5: "+lie.name, l)
	}
	out := Honest("flaky", -1, 10*time.Millisecond)
	out.ErrorRate = 0.1
	out.Outages = [][2]time.Duration{{30 * time.Second, 90 * time.Second}}
	two("one upstream fails 1 call in 10 and goes away for 60s", out)
	{
		c := Base(seed, blocks, time.Second, 6*time.Second)
		c.Followers = append(c.Followers, FollowerSpec{Upstreams: []Link{Honest("follower-0", 0, 10*time.Millisecond)}})
		add("chain: primary -> follower 0 -> follower 1", c)
	}
	// Upstreams that hold calls: the same proof delays and block
	// intervals; one that also stalls, beside an honest one; one that
	// holds beside one that does not; a chain.
	held := func(c Config) Config {
		for i := range c.Followers {
			for j := range c.Followers[i].Upstreams {
				c.Followers[i].Upstreams[j].HoldMax = 30 * time.Second
			}
		}
		return c
	}
	for _, iv := range []time.Duration{250 * time.Millisecond, time.Second, 5 * time.Second} {
		for _, d := range []time.Duration{0, 6 * time.Second, 30 * time.Second} {
			add(fmt.Sprintf("held: proofs %s ±25%% behind %s blocks", d, iv), held(Base(seed, blocks, iv, d)))
		}
	}
	// Proofs made just past the grace a held probe waits for them: the
	// grace must turn itself off, not add its lag to every block.
	add("held: proofs 40ms ±25% behind 1s blocks", held(Base(seed, blocks, time.Second, 40*time.Millisecond)))
	{
		c := held(Base(seed, blocks, time.Second, 6*time.Second))
		st := Stalling("staller", -1, 10*time.Millisecond, 30, 20*time.Second)
		st.HoldMax = 30 * time.Second
		c.Followers[0].Upstreams = append(c.Followers[0].Upstreams, st)
		add("held: one upstream stalls 1 call in 30 for 20s", c)
	}
	{
		c := held(Base(seed, blocks, time.Second, 6*time.Second))
		c.Followers[0].Upstreams = append(c.Followers[0].Upstreams, Honest("old", -1, 10*time.Millisecond))
		add("held: one upstream holds, one does not", c)
	}
	{
		c := Base(seed, blocks, time.Second, 6*time.Second)
		c.Followers = append(c.Followers, FollowerSpec{Upstreams: []Link{Honest("follower-0", 0, 10*time.Millisecond)}},
			FollowerSpec{Upstreams: []Link{Honest("follower-1", 1, 10*time.Millisecond)}})
		add("held: chain: primary -> follower 0 -> follower 1 -> follower 2", held(c))
	}
	{
		c := Base(seed, blocks, time.Second, 30*time.Second)
		c.Prefix = 2000
		c.Blocks = blocks + 2000
		c.Settle = 60 * time.Second
		add("catch-up of 2000 blocks, then caught up", c)
	}
	return cs
}

// RunAll runs every condition.
func RunAll(cs []Condition) []Row {
	rows := make([]Row, len(cs))
	for i, c := range cs {
		rows[i] = Row{Name: c.Name, Cfg: c.Cfg, Rep: Run(c.Cfg)}
	}
	return rows
}

// Frontier is the trade-off the proof schedule makes, bytes fetched against
// how far the proven tip trails, for proofs 30 s ± 25% behind 5 s blocks:
// the engine and the naive loop at several poll intervals (the naive loop's
// only knob; the engine's retry wait after a miss starts there).
func Frontier(seed uint64, blocks int) []Condition {
	var cs []Condition
	for _, naive := range []bool{false, true} {
		for _, poll := range []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second} {
			c := Base(seed, blocks, 5*time.Second, 30*time.Second)
			c.Naive = naive
			c.Engine.PollInterval = poll
			name := "engine"
			if naive {
				name = "naive loop"
			}
			cs = append(cs, Condition{Name: fmt.Sprintf("%s, poll %s", name, poll), Cfg: c})
		}
	}
	return cs
}

// WriteFrontier prints a frontier as a Markdown table.
func WriteFrontier(out io.Writer, rows []Row) {
	fmt.Fprintln(out, "| proofs 30s ±25% behind 5s blocks | fetched/useful | proof lag p99 | commit p99 | calls/block |")
	fmt.Fprintln(out, "|---|---|---|---|---|")
	for _, r := range rows {
		f := r.Rep.Followers[0]
		fmt.Fprintf(out, "| %s | %.2f | %s | %s | %.2f |\n", r.Name, f.BytesPerUseful, f.ProofLagP99.Round(10*time.Millisecond),
			f.CommitP99.Round(time.Millisecond), f.CallsPerBlock)
	}
}
