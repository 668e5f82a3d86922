package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"storesync/actors"
	"storesync/api"
	"storesync/internal/testnet"
	"storesync/runtime"
)

// Timing of the byzantine followers. FetchTimeout bounds what a stalled or
// trickling upstream can cost one block; SuspectFor is short so that the
// evil upstream is asked again, and lies again, within a short test.
const (
	byzBlockInterval = 25 * time.Millisecond
	byzFetchTimeout  = time.Second
	byzSuspectFor    = 200 * time.Millisecond
)

// TestByzantineUpstream: a follower of an evil upstream and the honest
// primary, for each way of misbehaving, never applies a bad block, names
// the upstream and the reason in a warning, counts it (a rejection by
// reason, or a failed fetch for what is a failure rather than a lie), and
// keeps up with the primary.
func TestByzantineUpstream(t *testing.T) {
	cases := []struct {
		name    string
		lie     misbehaviour
		failAll bool
		trickle bool
		// reason is the rejected counter's label; "" means the upstream
		// failed the call, counted as a fetch with outcome "error" (or, when
		// late, "cancelled": a hedge answered first).
		reason string
		late   bool
		// warning matches the line that names the upstream.
		warning string
		// notSuspect: /status is checked for a failing upstream (a problem
		// and a backoff) rather than a suspect one; noStatus: not checked,
		// the problem lasting only until the upstream's next good answer
		// (milliseconds), too short to be sure a poll of /status sees it.
		notSuspect, noStatus bool
		// alone: the liar is the follower's only upstream. A lie past the
		// tip answers a probe whose partner at the honest upstream answers
		// "none yet" first and cancels it (the edge's rule); beside the
		// honest store the follower would rarely get to see the lie.
		alone bool
	}{
		{name: "bit flipped", lie: lieBitFlipped, reason: "transaction commitment", warning: `upstream marked suspect.*check="transaction commitment"`},
		{name: "another height", lie: lieOtherHeight, reason: "number", warning: `marked suspect: asked for block \d+, got block \d+`},
		{name: "signed by another key", lie: lieStrangerSigned, reason: "signature", warning: `marked suspect: bad signature: header names producer`},
		{name: "roots not matching contents", lie: lieWrongRoots, reason: "account root", warning: `upstream marked suspect.*check="account root"`},
		{name: "truncated", lie: lieTruncated, reason: "decode", warning: `marked suspect: decode block`},
		{name: "over the size limit", lie: lieOverSize, warning: `GetBlockByNumber failed: .*ResourceExhausted`, noStatus: true},
		{name: "proof of another block", lie: lieProofOfOtherBlock, reason: "proof", warning: `marked suspect.*proof is for block \d+, not \d+`},
		{name: "proof failing verification", lie: lieProofFailing, reason: "proof", warning: `marked suspect.*does not verify against prover key`},
		{name: "block past the advertised tip", lie: liePastTip, reason: "signature", warning: `marked suspect: bad signature: header names producer`, alone: true},
		// A late call is hedged at the honest upstream and cancelled when
		// that one answers; an upstream late that often is suspect. A call
		// the hedge did not cover runs out of its timeout.
		{name: "stalls until the deadline", lie: lieStall, late: true, warning: `(GetBlockByNumber failed, marked suspect: timed out after .*DeadlineExceeded|answers late, marked suspect)`},
		{name: "trickles", lie: lieNot, trickle: true, late: true, warning: `(GetBlockByNumber failed, marked suspect: timed out after .*DeadlineExceeded|answers late, marked suspect)`},
		{name: "endless errors", failAll: true, warning: `GetBlockByNumber failed: .*code = (Unavailable|Internal)`, notSuspect: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A primary of its own, so that each follower starts a few
			// proven blocks behind (proofs come with blocks, then are
			// asked for at the tip) instead of behind a chain grown
			// while earlier cases ran.
			t.Parallel() // as many at once as -parallel allows (GOMAXPROCS): they mostly wait on blocks
			p := testnet.StartPrimary(t, byzBlockInterval, nil)
			testnet.WaitFor(t, 30*time.Second, "the primary to prove 10 blocks", func() bool { _, pr := p.Store().Tips(); return pr >= 10 })
			evil := startEvil(t, p, tc.lie, tc.failAll)
			addr := evil.Addr()
			if tc.trickle {
				addr = byzTrickle(t, addr)
			}
			log := newByzLog(t, "follower of "+addr+" (evil) and "+p.PublicAddr())
			var notes *byzNotes
			upstreams := []string{addr, p.PublicAddr()}
			if tc.alone {
				upstreams = upstreams[:1]
			}
			f, err := runtime.New(runtime.Config{
				DataDir: t.TempDir(), Genesis: testnet.GenesisOf(p.Node), Upstreams: upstreams,
				Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ShutdownGrace: time.Second,
				Engine: actors.Config{FetchWindow: 16, PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond,
					RetryMax: 500 * time.Millisecond, FetchTimeout: byzFetchTimeout, SuspectFor: byzSuspectFor},
				Log: log.logger,
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := f.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := f.Stop(); err != nil {
					t.Error(err)
				}
			})
			notes = watchByzNotes(t, f.HTTPAddr(), addr)

			lies := int64(scaled(3, 30))
			testnet.WaitFor(t, 60*time.Second, fmt.Sprintf("the evil upstream to misbehave %d times", lies),
				func() bool { return evil.bad.Load() >= lies })
			// Up to the tip, and past every height it lied at (a forgery
			// past the tip included), so each is checked below.
			target, _ := p.Store().Tips()
			if hs := evil.Heights(); len(hs) > 0 {
				target = max(target, hs[len(hs)-1])
			}
			testnet.WaitFor(t, 60*time.Second, fmt.Sprintf("the follower to reach the primary's tip %d", target),
				func() bool { c, _ := f.Store().Tips(); return c >= target })
			took := time.Since(start)

			testnet.SameChain(t, p.Store(), f.Store())
			fs, ps := f.Store().Snapshot(), p.Store().Snapshot()
			checked := 0
			for _, n := range evil.Heights() {
				if n > fs.Committed() {
					continue
				}
				got, err := fs.BlockBytes(n)
				if err != nil {
					t.Fatalf("block %d on the follower: %v", n, err)
				}
				want, err := ps.BlockBytes(n)
				if err != nil {
					t.Fatalf("block %d on the primary: %v", n, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("block %d applied on the follower is not the primary's", n)
				}
				checked++
			}

			metric, labels := "storesync_rejected_blocks_total", []string{"reason", tc.reason}
			if tc.reason == "" {
				metric, labels = "storesync_fetch_duration_seconds", []string{"outcome", "error"}
			}
			var counted float64
			testnet.WaitFor(t, 10*time.Second, fmt.Sprintf("%s%v to count the misbehaviour", metric, labels), func() bool {
				counted = byzMetric(t, f.HTTPAddr(), metric, labels...)
				if tc.late {
					counted += byzMetric(t, f.HTTPAddr(), metric, "outcome", "cancelled")
				}
				return counted >= 1
			})
			warning := regexp.MustCompile(tc.warning)
			testnet.WaitFor(t, 10*time.Second, "a warning naming the upstream and "+tc.warning, func() bool {
				return log.has("WARN", "upstream="+addr+" ", warning)
			})
			// /status showed what was held against the evil upstream while
			// it was: suspicion (for SuspectFor) for a bad block or proof or
			// a call that timed out; a problem and a backoff for calls that
			// all fail.
			testnet.WaitFor(t, 10*time.Second, "/status to show the evil upstream's problem", func() bool {
				n := notes.get(tc.notSuspect)
				switch {
				case tc.noStatus:
					return true
				case tc.notSuspect:
					return n.Problem != "" && !n.BackedOffUntil.IsZero()
				}
				return n.Suspect != "" && !n.SuspectUntil.IsZero()
			})
			t.Logf("%s: %d misbehaving answers, %.0f counted as %s%v, %d tampered heights checked; reached the primary's tip %d in %s; /status said %+v",
				tc.name, evil.bad.Load(), counted, metric, labels, checked, target, took.Round(time.Millisecond), notes.get(tc.notSuspect))
		})
	}
}

// byzTrickle puts a toxiproxy in front of addr that passes what the server
// sends on one byte at a time, 50 bytes a second: a response that never
// quite stops and never arrives.
func byzTrickle(t *testing.T, addr string) string {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "trickle", "127.0.0.1:0", addr)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	toxic := `{"type":"slicer","stream":"downstream","attributes":{"average_size":1,"size_variation":0,"delay":20000}}`
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatalf("toxiproxy slicer: %v", err)
	}
	return p.Listen
}

// byzMetric scrapes a node's /metrics and sums the samples of a family
// whose labels include the given pairs (a histogram counts observations).
func byzMetric(t *testing.T, httpAddr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", httpAddr, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", httpAddr, err)
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if byzHasLabels(m, labels) {
			sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func byzHasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// byzNotes is the last note against one upstream that a follower's /status
// showed with a suspicion, and the last with a backoff.
type byzNotes struct {
	mu                 sync.Mutex
	suspect, backedOff api.UpstreamNote
}

// watchByzNotes polls the follower's /status every 20 ms until the test
// ends (suspicion lasts byzSuspectFor, ten times that), keeping what it says
// of upstream.
func watchByzNotes(t *testing.T, httpAddr, upstream string) *byzNotes {
	n := &byzNotes{}
	done, stopped := make(chan struct{}), make(chan struct{})
	// No connection kept between polls: one left open (a spare the
	// transport dialed and never used) would hold up the follower's HTTP
	// shutdown for 5 s.
	transport := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Timeout: time.Second, Transport: transport}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var st api.NodeStatus
			resp, err := client.Get("http://" + httpAddr + "/status")
			if err != nil {
				continue // counted on below: the assertion waits for a note
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				continue
			}
			note := st.UpstreamNotes[upstream]
			n.mu.Lock()
			if note.Suspect != "" {
				n.suspect = note
			}
			if !note.BackedOffUntil.IsZero() {
				n.backedOff = note
			}
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; transport.CloseIdleConnections() })
	return n
}

// get returns the last note with a backoff (backedOff) or a suspicion.
func (n *byzNotes) get(backedOff bool) api.UpstreamNote {
	n.mu.Lock()
	defer n.mu.Unlock()
	if backedOff {
		return n.backedOff
	}
	return n.suspect
}

// byzLog keeps a node's log lines for assertions, and prints them if
// the test fails.
type byzLog struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	logger *slog.Logger
}

func newByzLog(t *testing.T, name string) *byzLog {
	t.Helper()
	r := &byzLog{}
	r.logger = slog.New(slog.NewTextHandler(byzLogWriter{r}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Logf("log of %s:\n%s", name, r.buf.String())
		}
	})
	return r
}

type byzLogWriter struct{ r *byzLog }

func (w byzLogWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.buf.Write(p)
}

// has reports whether a line at level holds the substring and matches re.
func (r *byzLog) has(level, substr string, re *regexp.Regexp) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for line := range strings.SplitSeq(r.buf.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, substr) && re.MatchString(line) {
			return true
		}
	}
	return false
}
