package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"storesync/actors"
	"storesync/health"
	"storesync/internal/testnet"
	"storesync/primary"
	"storesync/runtime"
)

// The shipped files, relative to this package's directory (where go test
// runs).
const (
	rulesFile     = "prometheus/storesync-rules.yml"
	rulesTestFile = "prometheus/storesync-rules_test.yml"
	dashboardFile = "grafana/storesync.json"
)

// Timing of the Prometheus the tests run: a few scrapes and evaluations a
// second, so that an alert goes pending within a second of its cause, and a
// `for:` short enough to watch it turn firing, yet long enough (a dozen
// evaluations) that the pending state is seen on the way.
const (
	scrapeEvery = 250 * time.Millisecond
	shortFor    = "3s"
)

// forLine is a rule's `for:` duration, alone on its line.
var forLine = regexp.MustCompile(`(?m)^(\s*for:\s*)\S+[ \t]*$`)

// shortRules is the shipped rule file with every `for:` set to d: the
// alerts as shipped, on a clock a test can wait for.
func shortRules(t *testing.T, d string) string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatalf("read rules: %v", err)
	}
	if !forLine.Match(b) {
		t.Fatalf("%s: no `for:` line to shorten", rulesFile)
	}
	return forLine.ReplaceAllString(string(b), "${1}"+d)
}

// prom is a Prometheus server run by a test, on loopback, with its storage
// in the test's temporary directory. Killed when the test ends.
type prom struct {
	url    string
	client *http.Client
	logs   *testnet.Buffer
}

// startPrometheus runs Prometheus scraping targets (host:port of HTTP
// listeners serving /metrics) as job "storesync", evaluating rules (the
// text of a rule file) at the scrape interval.
func startPrometheus(t *testing.T, targets []string, rules string) *prom {
	t.Helper()
	bin := testnet.Tool(t, "prometheus", "prometheus")
	dir := t.TempDir() // before the kill below: Cleanup runs last in, first out
	rulesPath := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rulesPath, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
rule_files:
  - %[2]q
scrape_configs:
  - job_name: storesync
    static_configs:
      - targets: [%[3]s]
`, scrapeEvery, rulesPath, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testnet.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p := &prom{url: "http://" + addr, client: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}, logs: &testnet.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		p.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("prometheus log:\n%s\nconfig:\n%s", p.logs.String(), cfg)
		}
	})
	testnet.WaitForExplained(t, 20*time.Second, "prometheus to be ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited at startup:\n%s", p.logs.String())
		default:
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, p.logs.String)
	return p
}

// apiResponse is the envelope of every answer of Prometheus' HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// get calls the API at path with query parameters and decodes its data into
// out. A query Prometheus refuses (bad PromQL) is an error naming it.
func (p *prom) get(path string, q url.Values, out any) error {
	resp, err := p.client.Get(p.url + path + "?" + q.Encode())
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("prometheus %s: read answer: %w", path, err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("prometheus %s: decode %q: %w", path, body, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("prometheus %s %v: %s: %s", path, q, r.ErrorType, r.Error)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return fmt.Errorf("prometheus %s: decode data %s: %w", path, r.Data, err)
	}
	return nil
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix seconds, "value"]
}

// val is the sample's value ("NaN" and "+Inf" included).
func (s sample) val() string { v, _ := s.Value[1].(string); return v }

// query evaluates expr now; only instant vectors are expected.
func (p *prom) query(expr string) ([]sample, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", expr, d.ResultType)
	}
	var out []sample
	if err := json.Unmarshal(d.Result, &out); err != nil {
		return nil, fmt.Errorf("query %s: decode result: %w", expr, err)
	}
	return out, nil
}

// alert is one active (pending or firing) alert.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

func (p *prom) alerts() ([]alert, error) {
	var d struct {
		Alerts []alert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", nil, &d)
	return d.Alerts, err
}

// rule is a loaded rule as /api/v1/rules shows it.
type rule struct {
	Name        string            `json:"name"`
	Query       string            `json:"query"`
	Type        string            `json:"type"` // alerting, recording
	Health      string            `json:"health"`
	LastError   string            `json:"lastError"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func (p *prom) rules() ([]rule, error) {
	var d struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &d); err != nil {
		return nil, err
	}
	var out []rule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// devnet is a primary and two followers on loopback, scraped by a
// Prometheus that runs the shipped rules (with `for:` shortened):
// healthy follows the primary; laggard fetches from it through a link the
// test can cut, and hears its tip directly (a --peer), so that its lag
// shows while the link is down.
type devnet struct {
	primary *testnet.Primary
	healthy *runtime.Follower
	laggard *runtime.Follower
	link    *testnet.CutProxy
	prom    *prom
}

// maxLag is the followers' --max-lag: above the default, so that a healthy
// follower under -race on a busy machine stays within it.
const maxLag = 3

func startDevnet(t *testing.T) *devnet {
	t.Helper()
	// Blocks every 200 ms: a follower that fell behind catches up in a few
	// seconds even on a disk other tests keep busy. Every follower report
	// counts toward the primary's replicated watermark.
	p := testnet.StartPrimary(t, 200*time.Millisecond, func(c *primary.Config) { c.Followers = []string{"any"} })
	d := &devnet{primary: p, link: testnet.NewCutProxy(t, p.PublicAddr())}
	g := testnet.GenesisOf(p.Node)
	d.healthy = startFollower(t, "healthy", g, []string{p.PublicAddr()}, nil)
	d.laggard = startFollower(t, "laggard", g, []string{d.link.Addr()}, []string{p.PublicAddr()})
	testnet.WaitForExplained(t, 30*time.Second, "both followers ready", func() bool {
		return d.healthy.Health().Ready && d.laggard.Health().Ready
	}, d.explain)
	d.prom = startPrometheus(t, []string{p.HTTPAddr(), d.healthy.HTTPAddr(), d.laggard.HTTPAddr()}, shortRules(t, shortFor))
	return d
}

func startFollower(t *testing.T, name, genesis string, upstreams, peers []string) *runtime.Follower {
	t.Helper()
	f, err := runtime.New(runtime.Config{
		DataDir: t.TempDir(), Genesis: genesis, Upstreams: upstreams, Peers: peers,
		Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ShutdownGrace: time.Second,
		Health:      health.Config{MaxLag: maxLag, StaleAfter: time.Second, Fall: 2, Rise: 2},
		HealthEvery: 50 * time.Millisecond,
		Engine:      actors.Config{PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		Log:         testnet.LogOnFailure(t, name+" follower"),
	})
	if err != nil {
		t.Fatalf("new %s follower: %v", name, err)
	}
	if err := f.Start(); err != nil {
		t.Fatalf("start %s follower: %v", name, err)
	}
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("stop %s follower: %v", name, err)
		}
	})
	return f
}

// explain says where every store is, for a wait that timed out.
func (d *devnet) explain() string {
	var b strings.Builder
	c, pr := d.primary.Store().Tips()
	fmt.Fprintf(&b, "primary %s: committed %d proven %d\n", d.primary.HTTPAddr(), c, pr)
	for _, f := range []struct {
		name string
		f    *runtime.Follower
	}{{"healthy", d.healthy}, {"laggard", d.laggard}} {
		if f.f == nil {
			continue
		}
		v := f.f.Health()
		fmt.Fprintf(&b, "%s %s: committed %d ready %v lag %d known %v: %s\n", f.name, f.f.HTTPAddr(), v.Local, v.Ready, v.Lag, v.LagKnown, v.Reason)
	}
	if d.prom != nil {
		as, err := d.prom.alerts()
		fmt.Fprintf(&b, "alerts: %+v (err %v)\n", as, err)
	}
	return b.String()
}
