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
	"testing"
	"time"

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
	links                               []string // trace IDs
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
					Attributes []struct {
						Key   string `json:"key"`
						Value struct {
							StringValue string `json:"stringValue"`
						} `json:"value"`
					} `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string `json:"traceId"`
						SpanID       string `json:"spanId"`
						ParentSpanID string `json:"parentSpanId"`
						Name         string `json:"name"`
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
				svc = a.Value.StringValue
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := span{service: svc, traceID: s.TraceID, spanID: s.SpanID, parentSpanID: s.ParentSpanID, name: s.Name}
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
// the proof's span linked to it.
func TestJourneyInJaeger(t *testing.T) {
	startJaeger(t)
	since := time.Now()
	suffix := fmt.Sprint(time.Now().UnixNano())
	ptr, err := otel.SetupTracing(context.Background(), "primary-"+suffix, "127.0.0.1:4317")
	if err != nil {
		t.Fatal(err)
	}
	ftr, err := otel.SetupTracing(context.Background(), "follower-"+suffix, "127.0.0.1:4317")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := primary.Init(dir, "test", 9); err != nil {
		t.Fatal(err)
	}
	p, err := primary.New(primary.Config{DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", Produce: true,
		BlockInterval: 50 * time.Millisecond, Profile: "small", Seed: 9, ProveDelay: 100 * time.Millisecond,
		ShutdownGrace: time.Second, Log: quiet(), Tracing: ptr.Provider})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f, err := New(Config{DataDir: t.TempDir(), Genesis: filepath.Join(dir, primary.GenesisFile), Upstreams: []string{p.PublicAddr()},
		Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Log: quiet(), Tracing: ftr.Provider})
	if err != nil {
		t.Fatal(err)
	}
	startFollower(t, f)
	waitFor(t, 30*time.Second, "10 blocks proven on the follower", func() bool { _, pr := f.Store().Tips(); return pr >= 10 })
	for _, tr := range []*otel.Tracing{ftr, ptr} {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tr.Shutdown(sctx); err != nil {
			t.Fatalf("flush spans: %v", err)
		}
		scancel()
	}
	// Jaeger ingests asynchronously: wait until both the block trace and a
	// proof span linked to a block are queryable.
	waitFor(t, 30*time.Second, "a complete block trace and a linked proof span in Jaeger", func() bool {
		spans := append(queryTraces(t, "follower-"+suffix, since), queryTraces(t, "primary-"+suffix, since)...)
		complete := false
		roots := map[string]bool{}
		for _, s := range spans {
			if s.name == "block" && s.parentSpanID == "" {
				roots[s.traceID] = true
				complete = complete || isComplete(spans, s, "primary-"+suffix)
			}
		}
		linked := false
		for _, s := range spans {
			for _, l := range s.links {
				linked = linked || (s.name == "proof" && roots[l])
			}
		}
		return complete && linked
	})
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
