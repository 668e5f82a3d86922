package deploy

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"storesync/internal/testnet"
)

// TestMain checks that the stores and Prometheus the tests start leave
// nothing running.
func TestMain(m *testing.M) { testnet.VerifyNoLeaks(m) }

// TestPromtoolRules: the shipped rules are valid, and their unit tests
// (each alert with series that must fire it and series that must not) pass.
func TestPromtoolRules(t *testing.T) {
	promtool := testnet.Tool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertsAgainstRealPrometheus: a real Prometheus scraping a primary
// and two followers loads every shipped rule, evaluates each without error,
// and, when one follower's link to its upstream is cut, takes the lagging
// alert for that follower through pending to firing, and resolves it once
// the link is back and the follower has caught up.
func TestAlertsAgainstRealPrometheus(t *testing.T) {
	d := startDevnet(t)
	p := d.prom
	wait := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		testnet.WaitForExplained(t, within, what, cond, d.explain)
	}
	checkLoadedRules(t, p)

	lag := d.laggard.HTTPAddr()
	state := func(name, instance string) (alert, bool) {
		as, err := p.alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Labels["alertname"] == name && a.Labels["instance"] == instance {
				return a, true
			}
		}
		return alert{}, false
	}
	wait("Prometheus to see the laggard ready, within its max-lag", 15*time.Second, func() bool {
		s, err := p.query(fmt.Sprintf(`storesync_ready{instance=%q} == 1 and storesync_max_lag_blocks == %d`, lag, maxLag))
		return err == nil && len(s) == 1
	})
	if a, ok := state("StoresyncFollowerLagging", lag); ok {
		t.Fatalf("lagging alert %s before any lag: %+v", a.State, a)
	}

	d.link.SetCut(true)
	var pending alert
	wait("the lagging alert to go pending", 20*time.Second, func() bool {
		a, ok := state("StoresyncFollowerLagging", lag)
		if ok && a.State == "firing" {
			t.Fatalf("lagging alert firing without being seen pending (for: %s): %+v", shortFor, a)
		}
		pending = a
		return ok && a.State == "pending"
	})
	if v, err := strconv.ParseFloat(pending.Value, 64); err != nil || v <= maxLag {
		t.Errorf("pending alert's value %q, want a lag above %d", pending.Value, maxLag)
	}
	if a := pending.Annotations; !strings.Contains(a["description"], lag) || a["summary"] == "" || a["runbook"] == "" {
		t.Errorf("pending alert's annotations %v, want a summary, a runbook and a description naming %s", a, lag)
	}
	wait("the lagging alert to fire", 20*time.Second, func() bool {
		a, ok := state("StoresyncFollowerLagging", lag)
		return ok && a.State == "firing"
	})
	// The readiness series reaches Prometheus too: the laggard is out.
	wait("the not-ready alert for the laggard", 10*time.Second, func() bool {
		_, ok := state("StoresyncFollowerNotReady", lag)
		return ok
	})

	d.link.SetCut(false)
	wait("the lagging alert to resolve once the laggard caught up", 40*time.Second, func() bool {
		_, ok := state("StoresyncFollowerLagging", lag)
		return !ok
	})
	if !d.laggard.Health().LagKnown {
		t.Error("the lagging alert resolved while the laggard's lag is unknown")
	}

	// The primary exports a lag of -1 and no readiness: it is no follower
	// whose lag is unknown, nor one that is not ready.
	for _, name := range []string{"StoresyncLagUnknown", "StoresyncFollowerNotReady", "StoresyncFollowerLagging"} {
		if a, ok := state(name, d.primary.HTTPAddr()); ok {
			t.Errorf("%s %s for the primary: %+v", name, a.State, a)
		}
	}
	// Every rule has been evaluated on real series by now: none may fail
	// (a join that matches many to many fails only on real data).
	rules, err := p.rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Health != "ok" || r.LastError != "" {
			t.Errorf("rule %s: health %q, error %q\n%s", r.Name, r.Health, r.LastError, r.Query)
		}
	}
}

// checkLoadedRules: Prometheus loaded every rule of the file, and each
// alert carries what an operator needs: a severity, a summary, a
// description naming the store (or the job) and a runbook line.
func checkLoadedRules(t *testing.T, p *prom) {
	t.Helper()
	text, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want := len(regexp.MustCompile(`(?m)^\s*- (alert|record):`).FindAll(text, -1))
	rules, err := p.rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != want {
		t.Fatalf("Prometheus loaded %d rules, the file has %d", len(rules), want)
	}
	alerts := 0
	for _, r := range rules {
		if r.Type != "alerting" {
			continue
		}
		alerts++
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Name, s)
		}
		for _, k := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[k]) == "" {
				t.Errorf("alert %s: no %s annotation", r.Name, k)
			}
		}
		if d := r.Annotations["description"]; !strings.Contains(d, "$labels.instance") && !strings.Contains(d, "$labels.job") {
			t.Errorf("alert %s: the description names neither the store nor the job: %q", r.Name, d)
		}
	}
	if alerts == 0 {
		t.Fatal("no alerting rule loaded")
	}
}

// Grafana's dashboard JSON, the parts the test reads.
type dashboard struct {
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []dashVariable `json:"list"`
	} `json:"templating"`
}

type dashPanel struct {
	Title      string         `json:"title"`
	Type       string         `json:"type"`
	Datasource *dashSource    `json:"datasource"`
	Targets    []dashTarget   `json:"targets"`
	Panels     []dashPanel    `json:"panels"` // a collapsed row's
	GridPos    map[string]int `json:"gridPos"`
}

type dashTarget struct {
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
	Datasource *dashSource `json:"datasource"`
}

type dashSource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashVariable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// dsVar is the datasource every panel names: a template variable, so that
// the dashboard imports onto any Prometheus.
const dsVar = "${DS_PROMETHEUS}"

// rangeWindow stands for $__rate_interval and its kin: a minute holds many
// scrapes at the test's interval, and the rates are over the data there is.
const rangeWindow = "1m"

// dashQuery is one query of the dashboard, its variables substituted.
type dashQuery struct {
	where string // panel and target, for messages
	expr  string
}

// dashboardQueries reads the shipped dashboard, checks its datasources and
// variables, and returns every panel target's query and every query
// variable's (as PromQL), each variable set to its "All" value.
func dashboardQueries(t *testing.T) []dashQuery {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	values := map[string]string{"__rate_interval": rangeWindow, "__interval": rangeWindow, "__range": rangeWindow}
	var queries []dashQuery
	hasDS := false
	for _, v := range dash.Templating.List {
		switch v.Type {
		case "datasource":
			hasDS = hasDS || "${"+v.Name+"}" == dsVar
		case "query", "custom":
			if !v.IncludeAll || v.AllValue == "" {
				t.Errorf("variable %s: no All value to test the queries with", v.Name)
			}
			values[v.Name] = v.AllValue
		}
	}
	if !hasDS {
		t.Errorf("no datasource variable named by %s", dsVar)
	}
	subst := func(where, expr string) string {
		out := templateVar.ReplaceAllStringFunc(expr, func(m string) string {
			name := strings.Trim(m, "$[]{}")
			if i := strings.IndexByte(name, ':'); i >= 0 {
				name = name[:i] // ${var:format}
			}
			if v, ok := values[name]; ok {
				return v
			}
			t.Errorf("%s: unknown variable %s in %q", where, m, expr)
			return m
		})
		return out
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		// label_values(selector, label) is Grafana's, not PromQL: the
		// series it reads must exist with that label.
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		where := "variable " + v.Name
		queries = append(queries, dashQuery{where, fmt.Sprintf("group by (%s) (%s)", m[2], subst(where, m[1]))})
	}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no query", p.Title)
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					t.Errorf("%s: datasource %+v, want uid %s", where, tg.Datasource, dsVar)
				}
				queries = append(queries, dashQuery{where, subst(where, tg.Expr)})
			}
		}
	}
	walk(dash.Panels)
	if t.Failed() {
		t.FailNow()
	}
	return queries
}

var (
	templateVar = regexp.MustCompile(`\$\{[\w:]+\}|\[\[\w+\]\]|\$\w+`)
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
)

// TestDashboardQueries: every query of the shipped dashboard is valid
// PromQL and returns data (some sample not NaN) against a real Prometheus
// scraping a primary and two followers with the shipped recording rules.
func TestDashboardQueries(t *testing.T) {
	queries := dashboardQueries(t)
	d := startDevnet(t)
	results := make([]string, len(queries))
	done := make([]bool, len(queries))
	testnet.WaitForExplained(t, 30*time.Second, "every dashboard query to return data", func() bool {
		all := true
		for i, q := range queries {
			if done[i] {
				continue
			}
			s, err := d.prom.query(q.expr)
			if err != nil {
				// Prometheus refused it: no amount of waiting helps.
				t.Fatalf("%s: %v", q.where, err)
			}
			results[i] = fmt.Sprint(s)
			for _, x := range s {
				if v, err := strconv.ParseFloat(x.val(), 64); err == nil && !math.IsNaN(v) {
					done[i] = true
				}
			}
			all = all && done[i]
		}
		return all
	}, func() string {
		var b strings.Builder
		for i, q := range queries {
			if !done[i] {
				fmt.Fprintf(&b, "no data yet: %s: %s\n  last result: %s\n", q.where, q.expr, results[i])
			}
		}
		return b.String() + d.explain()
	})
	// What each panel drew, for a reader of go test -v: the first
	// series of each answer.
	for i, q := range queries {
		r := results[i]
		if len(r) > 160 {
			r = r[:160] + "..."
		}
		t.Logf("%s: %s", q.where, r)
	}
	t.Logf("%d dashboard queries returned data", len(queries))
}
