package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"storesync/actors"
	"storesync/otel"
	"storesync/primary"
)

// jaegerBinary builds Jaeger (all-in-one, in-memory) from the tools/jaeger
// module once and keeps it in the user's cache directory: a cold build takes
// minutes, a cached one nothing.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	mod := filepath.Join(filepath.Dir(filepath.Dir(file)), "tools", "jaeger")
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "storesync", "jaeger-v1.76.0")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "build", "-modfile="+filepath.Join(mod, "go.mod"), "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build jaeger: %v\n%s", err, out)
	}
	return bin
}

// startJaeger runs Jaeger on loopback only and waits until it is healthy.
func startJaeger(t *testing.T) {
	t.Helper()
	cmd := exec.Command(jaegerBinary(t),
		"--set=extensions.jaeger_query.http.endpoint=127.0.0.1:16686",
		"--set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:16685",
		"--set=extensions.jaeger_query.enable_tracing=false")
	cmd.Env = append(os.Environ(), "JAEGER_LISTEN_HOST=127.0.0.1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 60*time.Second, "Jaeger to be healthy", func() bool {
		resp, err := http.Get("http://127.0.0.1:13133/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// span is what the test reads of a span in Jaeger's OTLP JSON.
type span struct {
	service                             string
	traceID, spanID, parentSpanID, name string
	start, end                          time.Time
	attrs                               map[string]string // every value as text
	links                               []string          // trace IDs
}

func (s span) took() time.Duration { return s.end.Sub(s.start) }

// otlpValue is an attribute value in OTLP JSON (64-bit integers are
// strings there).
type otlpValue struct {
	StringValue *string  `json:"stringValue"`
	BoolValue   *bool    `json:"boolValue"`
	IntValue    *string  `json:"intValue"`
	DoubleValue *float64 `json:"doubleValue"`
}

func (v otlpValue) text() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.IntValue != nil:
		return *v.IntValue
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'f', -1, 64)
	}
	return ""
}

type otlpAttr struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

func unixNano(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, n)
}

func queryTraces(t *testing.T, service string, since time.Time) []span {
	t.Helper()
	q := url.Values{}
	q.Set("query.service_name", service)
	q.Set("query.start_time_min", since.Add(-time.Minute).UTC().Format(time.RFC3339Nano))
	q.Set("query.start_time_max", time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano))
	q.Set("query.num_traces", "1000")
	resp, err := http.Get("http://127.0.0.1:16686/api/v3/traces?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Result struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []otlpAttr `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string     `json:"traceId"`
						SpanID       string     `json:"spanId"`
						ParentSpanID string     `json:"parentSpanId"`
						Name         string     `json:"name"`
						Start        string     `json:"startTimeUnixNano"`
						End          string     `json:"endTimeUnixNano"`
						Attributes   []otlpAttr `json:"attributes"`
						Links        []struct {
							TraceID string `json:"traceId"`
						} `json:"links"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode Jaeger answer: %v", err)
	}
	var out []span
	for _, rs := range doc.Result.ResourceSpans {
		svc := ""
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				svc = a.Value.text()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := span{service: svc, traceID: s.TraceID, spanID: s.SpanID, parentSpanID: s.ParentSpanID, name: s.Name,
					start: unixNano(s.Start), end: unixNano(s.End), attrs: map[string]string{}}
				for _, a := range s.Attributes {
					sp.attrs[a.Key] = a.Value.text()
				}
				for _, l := range s.Links {
					sp.links = append(sp.links, l.TraceID)
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

// TestJourneyInJaeger: with a real Jaeger, a block's journey arrives as one
// trace: the root span, its stage spans as children, the apply's media under
// apply, the primary's GetBlockByNumber server span in the same trace, and
// the proof's span linked to it. The root covers the follower's own share
// of the block's latency: it starts at the launch of the call that brought
// the block (a held call: at its release), so it lasts a fraction of a
// block interval, however long the follower has been running; the empty
// polls of a block not made yet are traces of their own (probe), never in
// a block's trace. One follower holds its probes at the primary, the other
// polls.
func TestJourneyInJaeger(t *testing.T) {
	startJaeger(t)
	since := time.Now()
	suffix := fmt.Sprint(time.Now().UnixNano())
	setup := func(service string) *otel.Tracing {
		tr, err := otel.SetupTracing(context.Background(), otel.TraceConfig{Service: service + "-" + suffix, Endpoint: "127.0.0.1:4317", Sample: 1, Log: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	ptr, htr, qtr := setup("primary"), setup("held"), setup("polling")
	dir := t.TempDir()
	if _, err := primary.Init(dir, "test", 9); err != nil {
		t.Fatal(err)
	}
	// Blocks a second apart: a root that began at the block's first probe
	// would last about as long as the follower has run; one that began at
	// the serving call, a small part of a second.
	const interval = time.Second
	p, err := primary.New(primary.Config{DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", Produce: true,
		BlockInterval: interval, Profile: "small", Seed: 9, ProveDelay: 100 * time.Millisecond,
		ShutdownGrace: time.Second, Log: quiet(), Tracing: ptr.Provider})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopPrimary := sync.OnceFunc(func() { cancel(); <-done })
	defer stopPrimary()
	follower := func(tr *otel.Tracing, engine actors.Config) *Follower {
		f, err := New(Config{DataDir: t.TempDir(), Genesis: filepath.Join(dir, primary.GenesisFile), Upstreams: []string{p.PublicAddr()},
			Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Log: quiet(), Tracing: tr.Provider, Engine: engine})
		if err != nil {
			t.Fatal(err)
		}
		startFollower(t, f)
		return f
	}
	held := follower(htr, actors.Config{})
	polling := follower(qtr, actors.Config{NoHold: true, PollInterval: 100 * time.Millisecond})
	started := time.Now()
	waitFor(t, 60*time.Second, "8 blocks proven on both followers", func() bool {
		_, a := held.Store().Tips()
		_, b := polling.Store().Tips()
		return a >= 8 && b >= 8
	})
	age := time.Since(started)
	// Stopped before the flush, so that every root ended is exported with
	// every span of its trace (the primary's server spans included).
	for _, f := range []*Follower{held, polling} {
		if err := f.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	stopPrimary()
	for _, tr := range []*otel.Tracing{htr, qtr, ptr} {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tr.Shutdown(sctx); err != nil {
			t.Fatalf("flush spans: %v", err)
		}
		scancel()
	}
	primaryService := "primary-" + suffix
	for _, svc := range []string{"held", "polling"} {
		service := svc + "-" + suffix
		var spans []span
		var roots []span
		// Jaeger ingests asynchronously: wait until every block root is
		// complete and a proof span links to one of them.
		waitFor(t, 30*time.Second, service+": complete block traces and a linked proof span in Jaeger", func() bool {
			spans = dedupe(append(queryTraces(t, service, since), queryTraces(t, primaryService, since)...))
			roots = roots[:0]
			ids := map[string]bool{}
			for _, s := range spans {
				if s.service == service && s.name == "block" && s.parentSpanID == "" {
					roots = append(roots, s)
					ids[s.traceID] = true
					if !isComplete(spans, s, primaryService) {
						return false
					}
				}
			}
			linked := false
			for _, s := range spans {
				for _, l := range s.links {
					linked = linked || (s.name == "proof" && ids[l])
				}
			}
			return len(roots) >= 6 && linked
		})
		probes, releasedAfterArrival := 0, 0
		var longest time.Duration
		for _, s := range spans {
			if s.service == service && s.name == "probe" && s.parentSpanID == "" && s.attrs["probe.outcome"] == "empty" {
				probes++
			}
		}
		for _, root := range roots {
			longest = max(longest, root.took())
			if root.took() > 3*time.Second {
				t.Errorf("%s: block %s's root lasted %s (the follower ran %s): it must start at the serving call", service, root.attrs["block.number"], root.took(), age)
			}
			var server span
			for _, s := range spans {
				if s.traceID != root.traceID {
					continue
				}
				if s.name == "fetch" && s.attrs["fetch.answer"] != "block" {
					t.Errorf("%s: block %s's trace holds a fetch that answered %q", service, root.attrs["block.number"], s.attrs["fetch.answer"])
				}
				if s.service == primaryService && s.name == "storesync.v1.Store/GetBlockByNumber" {
					server = s
				}
			}
			if wait, _ := strconv.ParseFloat(root.attrs["fetch.wait_ms"], 64); root.attrs["fetch.held"] == "true" && wait > 0 {
				// Held, then released: the root starts at the release,
				// after the primary received the call.
				releasedAfterArrival++
				if root.start.Before(server.start) {
					t.Errorf("%s: block %s was held %.0f ms, but its root starts %s before the primary's server span", service, root.attrs["block.number"], wait, server.start.Sub(root.start))
				}
			}
		}
		t.Logf("%s: %d block roots, the longest %s, after %s of running; %d released after a hold; %d empty probes apart",
			service, len(roots), longest.Round(time.Millisecond), age.Round(time.Second), releasedAfterArrival, probes)
		switch svc {
		case "held":
			if releasedAfterArrival < 3 {
				t.Errorf("held: %d blocks came from a held call the primary released, want most of them", releasedAfterArrival)
			}
		case "polling":
			if probes == 0 {
				t.Error("polling: no empty probe traces: where did its polls go?")
			}
		}
	}
}

// dedupe drops the spans listed twice (a trace holding both services'
// spans comes back from the query of either).
func dedupe(spans []span) []span {
	seen := map[[2]string]bool{}
	out := spans[:0]
	for _, s := range spans {
		if k := [2]string{s.traceID, s.spanID}; !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// isComplete reports whether root's trace holds every stage as its child, the
// media under apply, and the primary's server span.
func isComplete(spans []span, root span, primaryService string) bool {
	children := map[string]string{} // name -> span id, direct children of root
	var apply string
	media := map[string]bool{}
	server := false
	for _, s := range spans {
		if s.traceID != root.traceID {
			continue
		}
		if s.parentSpanID == root.spanID {
			children[s.name] = s.spanID
			if s.name == "apply" {
				apply = s.spanID
			}
		}
		if s.service == primaryService && s.name == "storesync.v1.Store/GetBlockByNumber" {
			server = true
		}
	}
	for _, s := range spans {
		if s.traceID == root.traceID && apply != "" && s.parentSpanID == apply {
			media[s.name] = true
		}
	}
	for _, stage := range []string{"fetch", "verify", "queue.wait", "apply"} {
		if children[stage] == "" {
			return false
		}
	}
	return media["validate"] && media["trees"] && media["blockfile"] && media["sqlite"] && server
}
