//go:build linux

package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"storesync/api"
	"storesync/genesis"
	"storesync/internal/testnet"
	"storesync/primary"
	"storesync/store"
)

// The crash loop kills the follower process with SIGKILL at seeded random
// instants, first while it catches up a backlog, then once it follows the
// primary block by block, and restarts it on the same data directory each
// time. Whatever the follower said (its /status, polled between kills) must
// survive: a tip reported and then lost would mean it serves, and counts
// toward the replicated watermark, blocks it may not have.
const crashLoopSeedEnv = "STORESYNC_CRASHLOOP_SEED"

const (
	// pollEvery is how often the follower's /status is asked between kills:
	// often enough that the last report before a kill is close to the tip
	// it had, rarely enough to leave the two cores to the nodes.
	pollEvery = 5 * time.Millisecond
	// steadyLag: a follower within this many blocks of the primary is
	// following, not catching up (a block every 100 or 200 ms, a poll every
	// 20 ms).
	steadyLag = 3
	// stallLimit: a run whose tips have not moved for this long (or that
	// has not answered for this long since it started) is stuck. Progress,
	// not speed: a loaded machine under the race detector may sync slowly.
	stallLimit = time.Minute
	// runLimit bounds one run of the follower however it progresses.
	runLimit = 20 * time.Minute
	// bindRetries bounds the runs restarted because another process took a
	// port between choosing it and the follower binding it.
	bindRetries = 5
)

// tips is a committed and a proven tip.
type tips struct{ committed, proven uint64 }

func (a tips) String() string { return fmt.Sprintf("%d/%d", a.committed, a.proven) }

// crashLoopFigures are what the test measures and logs.
type crashLoopFigures struct {
	kills, duringStartup, duringCatchUp, duringSteady int
	recoveredAhead                                    int    // restarts that found more than had been reported
	maxAhead                                          uint64 // most blocks committed but not yet reported at a kill
	firstAnswer, firstBlock, caughtUp                 []time.Duration
	maxReported, recovered                            []uint64 // per restart that answered: the highest committed tip reported before it, the one it came back at
}

// TestFollowerCrashLoop: the follower binary, killed with SIGKILL at least
// 100 times in the long form (12 in the short one) during catch-up and in
// steady state and restarted on the same data directory, never reports a
// tip it loses in the crash (at its /status or to its upstream, in the
// primary's table of reports), never moves its proven tip back, restarts each
// time, and ends with the primary's exact chain: the same commitment at
// every height, the same roots, the same proofs.
func TestFollowerCrashLoop(t *testing.T) {
	kills := scaled(12, 120)
	backlog := scaled(uint64(150), uint64(1000))
	seed := crashLoopSeed(t)
	t.Logf("seed %d (%s=%d replays the kill schedule), %d kills, backlog %d blocks", seed, crashLoopSeedEnv, seed, kills, backlog)
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()

	// The backlog as fast as the primary commits (while the follower
	// builds), then the same chain from the same directory at a steady pace.
	pre := testnet.StartPrimary(t, time.Millisecond, nil)
	bin := buildFollower(t)
	testnet.WaitFor(t, 5*time.Minute, "the primary's backlog", func() bool { c, _ := pre.Store().Tips(); return c >= backlog })
	pdir := filepath.Dir(pre.Store().Dir())
	pre.Stop()
	// Every reporter counts: the primary's table of the follower's reports
	// (its durable tips, told on every call) is checked like its /status.
	p := testnet.StartPrimary(t, scaled[time.Duration](200, 100)*time.Millisecond, func(c *primary.Config) {
		c.DataDir, c.Followers = pdir, []string{"any"}
	})
	gpath := testnet.GenesisOf(p.Node)
	bc, _ := p.Store().Tips()
	t.Logf("backlog of %d blocks (at least %d asked) ready after %s", bc, backlog, time.Since(began).Round(time.Millisecond))

	dir, logs := t.TempDir(), t.TempDir()
	args := []string{"--data-dir", dir, "--genesis", gpath, "--upstream", p.PublicAddr(),
		"--poll-interval", "20ms", "--retry-initial", "10ms", "--retry-max", "200ms", "--fetch-timeout", "5s",
		"--health-interval", "200ms", "--shutdown-grace", "1s", "--log-level", "info"}
	var reported tips // the highest tips any earlier run reported
	var fig crashLoopFigures
	retries := 0
	for run := 0; run <= kills; run++ {
		cl := &crashRun{
			t: t, seed: seed, run: run, kill: run < kills, primary: p,
			// The first half lands wherever the run happens to be (mostly
			// catching up); the second half waits until the follower has
			// caught up, so it is killed while following.
			steady:   run >= kills/2,
			reported: reported,
		}
		// A quarter of the kills count from the process start, so some hit
		// it while it opens its store; the rest from its first answer (or
		// from catching up). Catching up starts slowly after a restart, so
		// those runs get longer.
		cl.fromStart = rng.IntN(4) == 0
		switch {
		case cl.fromStart:
			cl.delay = time.Duration(rng.IntN(400)) * time.Millisecond
		case cl.steady:
			cl.delay = time.Duration(rng.IntN(600)) * time.Millisecond
		default:
			cl.delay = time.Duration(rng.IntN(1500)) * time.Millisecond
		}
		cl.proc = startProc(t, bin, filepath.Join(logs, fmt.Sprintf("run-%03d.log", run)), args...)
		cl.watch()
		if cl.bindFailed {
			if retries++; retries > bindRetries {
				t.Fatalf("run %d: %d runs lost their port to another process", run, retries)
			}
			run--
			continue
		}
		reported = cl.record(&fig, reported)
	}

	// The last run was stopped with SIGTERM once caught up; its store, opened
	// here, must be the primary's chain and hold all it reported.
	g, err := genesis.Load(gpath)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := store.Open(filepath.Join(dir, "store"), g)
	if err != nil {
		t.Fatalf("seed %d: open the follower's store after the last run: %v", seed, err)
	}
	defer fs.Close()
	final := tips{}
	final.committed, final.proven = fs.Tips()
	if final.committed < reported.committed || final.proven < reported.proven {
		t.Fatalf("seed %d: the store holds %s after a clean stop, but %s was reported", seed, final, reported)
	}
	if final.committed < backlog {
		t.Fatalf("seed %d: the follower ended at %d, short of the %d-block backlog", seed, final.committed, backlog)
	}
	// The same commitment at every height is the same header, roots
	// included; SameChain also checks the trees the follower rebuilt.
	testnet.SameChain(t, p.Store(), fs)
	psn, fsn := p.Store().Snapshot(), fs.Snapshot()
	for n := uint64(1); n <= final.proven; n++ {
		want, err := psn.ProofBytes(n)
		if err != nil {
			t.Fatalf("proof %d on the primary: %v", n, err)
		}
		got, err := fsn.ProofBytes(n)
		if err != nil || string(got) != string(want) {
			t.Fatalf("seed %d: proof %d differs on the follower (%v)", seed, n, err)
		}
	}
	pc, pp := p.Store().Tips()
	t.Logf("at the end the primary was at %d/%d, the follower at %s", pc, pp, final)
	fig.log(t, final, time.Since(began))
}

// crashLoopSeed is the seed from the environment, or a new one.
func crashLoopSeed(t *testing.T) uint64 {
	t.Helper()
	v := os.Getenv(crashLoopSeedEnv)
	if v == "" {
		return uint64(time.Now().UnixNano())
	}
	seed, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", crashLoopSeedEnv, v, err)
	}
	return seed
}

// crashRun is one run of the follower: started, polled, killed (or, for
// the last, stopped cleanly once caught up).
type crashRun struct {
	t               *testing.T
	seed            uint64
	run             int
	kill, steady    bool
	fromStart       bool
	delay           time.Duration
	primary         *testnet.Primary
	proc            *proc
	reported        tips // before this run
	bindFailed      bool // the run never started: a port was taken
	answered        bool
	first, max      tips // first and highest reported in this run
	upstream        tips // highest the primary's table held of it in this run
	firstAnswer     time.Duration
	firstBlock      time.Duration // first answer to the first block committed in this run
	moved           time.Time     // when the tips last moved (or the run started or answered)
	caughtUp        time.Duration // first answer to within steadyLag (steady runs)
	armed, sentTerm bool
	target          tips // the last run: when to stop it
	// For the kill timer's goroutine: whether an answer came, the latest
	// committed tip reported, and the lag it measures at the kill (-1:
	// killed before any answer).
	anyAnswer     atomic.Bool
	lastCommitted atomic.Uint64
	lagAtKill     atomic.Int64
	timer         *time.Timer
}

func (r *crashRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("seed %d, run %d: %s\nlog of the run:\n%s", r.seed, r.run, fmt.Sprintf(format, args...), r.proc.tail())
}

// arm schedules the kill delay from now.
func (r *crashRun) arm() {
	r.armed = true
	r.timer = time.AfterFunc(r.delay, func() {
		pc, _ := r.primary.Store().Tips()
		if r.anyAnswer.Load() {
			r.lagAtKill.Store(int64(pc) - int64(r.lastCommitted.Load()))
		} else {
			r.lagAtKill.Store(-1)
		}
		r.proc.sigkill()
	})
}

// watch polls the run until the process exits, checking every answer.
func (r *crashRun) watch() {
	r.t.Helper()
	r.moved = r.proc.started
	if r.kill && r.fromStart {
		r.arm()
	}
	defer func() {
		if r.timer != nil {
			r.timer.Stop()
		}
	}()
	deadline := r.proc.started.Add(runLimit)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !r.proc.exited() {
		if now := time.Now(); now.After(deadline) || now.Sub(r.moved) > stallLimit {
			r.fatalf("stuck at %s for %s after %s of running (armed %v)", r.max,
				now.Sub(r.moved).Round(time.Second), now.Sub(r.proc.started).Round(time.Second), r.armed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := r.proc.status(ctx)
		cancel()
		if err == nil {
			r.observe(st)
		}
		r.observeUpstream()
		select {
		case <-r.proc.done:
		case <-tick.C:
		}
	}
	if rep := r.proc.raceReport(); rep != "" {
		r.t.Fatalf("seed %d, run %d: the follower has a data race:\n%s", r.seed, r.run, rep)
	}
	switch {
	case r.proc.killedBySignal() && r.kill:
	case r.sentTerm && r.proc.err == nil:
	case !r.answered && r.proc.bindFailed():
		r.bindFailed = true
	default:
		r.fatalf("the follower exited by itself: %v", r.proc.err)
	}
}

// observe checks one /status answer and moves the run along.
func (r *crashRun) observe(st api.NodeStatus) {
	r.t.Helper()
	got := tips{st.Committed, st.Proven}
	now := time.Now()
	if !r.answered {
		r.answered, r.first, r.max = true, got, got
		r.firstAnswer = now.Sub(r.proc.started)
		// What it reports right after a restart is what it recovered: all
		// it reported before the crash must be there.
		if got.committed < r.reported.committed || got.proven < r.reported.proven {
			r.fatalf("restarted at %s, but %s was reported (at /status or to the primary) before the kill", got, r.reported)
		}
		if !r.kill {
			pc, pp := r.primary.Store().Tips()
			// Every block the primary has, and the proven tip moving on from
			// where the crashes left it: catching up proofs fetched one by
			// one after blocks that came without them is not this test's
			// concern, only that none is lost or wrong.
			r.target = tips{pc, min(pp, r.reported.proven+1)}
		} else if !r.fromStart && !r.steady {
			r.arm()
		}
	}
	if got.committed < r.max.committed || got.proven < r.max.proven {
		r.fatalf("reported %s after %s in the same run", got, r.max)
	}
	if r.firstBlock == 0 && got.committed > r.first.committed {
		r.firstBlock = now.Sub(r.proc.started) - r.firstAnswer
	}
	if got != r.max || r.moved == r.proc.started {
		r.moved = now
	}
	r.max = tips{max(r.max.committed, got.committed), max(r.max.proven, got.proven)}
	r.lastCommitted.Store(got.committed)
	r.anyAnswer.Store(true)
	pc, _ := r.primary.Store().Tips()
	if r.caughtUp == 0 && got.committed+steadyLag >= pc {
		r.caughtUp = max(now.Sub(r.proc.started)-r.firstAnswer, time.Nanosecond)
		if r.kill && r.steady && !r.armed {
			r.arm()
		}
	}
	if !r.kill && !r.sentTerm && got.committed >= r.target.committed && got.proven >= r.target.proven {
		r.sentTerm = true
		if err := r.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			r.fatalf("stop the follower: %v", err)
		}
	}
}

// observeUpstream reads what the primary's table holds of the follower,
// told on the follower's calls: it must never be more than the follower has
// made durable, so the next restart is checked against it too.
func (r *crashRun) observeUpstream() {
	for _, row := range r.primary.Replicas().Status().Followers {
		r.upstream = tips{max(r.upstream.committed, row.Committed), max(r.upstream.proven, row.Proven)}
	}
}

// String is the run in one line, for the test's log.
func (r *crashRun) String() string {
	how := "stopped with SIGTERM"
	if r.kill {
		from := "first answer"
		if r.fromStart {
			from = "start"
		} else if r.steady {
			from = "catching up"
		}
		how = fmt.Sprintf("killed %s after %s", r.delay, from)
		if lag := r.lagAtKill.Load(); lag >= 0 {
			how += fmt.Sprintf(", %d blocks behind", lag)
		}
	}
	if !r.answered {
		return how + ", before any answer"
	}
	return fmt.Sprintf("%s; answered after %s at %s, reported up to %s", how, r.firstAnswer.Round(time.Millisecond), r.first, r.max)
}

// record adds the run to the figures and returns the highest tips
// reported so far.
func (r *crashRun) record(fig *crashLoopFigures, reported tips) tips {
	if r.answered {
		fig.firstAnswer = append(fig.firstAnswer, r.firstAnswer)
		if r.firstBlock > 0 {
			fig.firstBlock = append(fig.firstBlock, r.firstBlock)
		}
		if r.first.committed > reported.committed {
			fig.recoveredAhead++
			fig.maxAhead = max(fig.maxAhead, r.first.committed-reported.committed)
		}
		if r.run > 0 {
			fig.maxReported = append(fig.maxReported, reported.committed)
			fig.recovered = append(fig.recovered, r.first.committed)
		}
		if r.steady && r.caughtUp > 0 {
			fig.caughtUp = append(fig.caughtUp, r.caughtUp)
		}
	}
	r.t.Logf("run %d: %s", r.run, r)
	if r.kill {
		fig.kills++
		switch lag := r.lagAtKill.Load(); {
		case lag < 0:
			fig.duringStartup++
		case lag > steadyLag:
			fig.duringCatchUp++
		default:
			fig.duringSteady++
		}
	}
	if r.upstream.committed > r.max.committed || r.upstream.proven > r.max.proven {
		r.t.Logf("run %d: the primary heard %s before /status said %s", r.run, r.upstream, r.max)
	}
	return tips{max(reported.committed, r.max.committed, r.upstream.committed), max(reported.proven, r.max.proven, r.upstream.proven)}
}

func (f *crashLoopFigures) log(t *testing.T, final tips, took time.Duration) {
	t.Helper()
	t.Logf("%d kills: %d during start-up (before the first answer), %d during catch-up (more than %d blocks behind), %d in steady state",
		f.kills, f.duringStartup, f.duringCatchUp, steadyLag, f.duringSteady)
	t.Logf("blocks synced: %d (proven %d); every restart recovered at least the highest tip reported before its kill; %d of %d found more committed than reported (at most %d blocks more)",
		final.committed, final.proven, f.recoveredAhead, len(f.recovered), f.maxAhead)
	var gap []uint64
	for i := range f.recovered {
		gap = append(gap, f.recovered[i]-f.maxReported[i])
	}
	if len(gap) > 0 {
		slices.Sort(gap)
		t.Logf("recovered minus reported before the kill (blocks): min %d, median %d, max %d", gap[0], gap[len(gap)/2], gap[len(gap)-1])
	}
	t.Logf("restart to first answer (store recovered, serving): %s", spread(f.firstAnswer))
	t.Logf("first answer to first block committed: %s", spread(f.firstBlock))
	t.Logf("first answer to caught up (steady-state runs): %s", spread(f.caughtUp))
	t.Logf("took %s", took.Round(time.Millisecond))
}

// spread is the min, median, 90th percentile and max of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %s, median %s, p90 %s, max %s (%d runs)", r(s[0]), r(s[len(s)/2]), r(s[len(s)*9/10]), r(s[len(s)-1]), len(s))
}
