package replicas

import (
	"strings"
	"testing"
)

func TestParseTrustAccepts(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		any  bool
		want []string // the names trusted
	}{
		{"nothing", nil, false, nil},
		{"empty values", []string{"", " , ,"}, false, nil},
		{"id", []string{"0123456789abcdef0123456789abcdef"}, false, []string{"0123456789abcdef0123456789abcdef"}},
		{"id with - and _", []string{"edge-1_b"}, false, []string{"edge-1_b"}},
		{"host:port", []string{"follower.example:7000"}, false, []string{"follower.example:7000"}},
		{"ipv4", []string{"10.0.0.2:7000"}, false, []string{"10.0.0.2:7000"}},
		{"ipv6", []string{"[::1]:7000"}, false, []string{"[::1]:7000"}},
		{"any", []string{"any"}, true, nil},
		{"comma separated", []string{"a, b:1 ,c"}, false, []string{"a", "b:1", "c"}},
		{"repeated", []string{"a", "b:1", "a"}, false, []string{"a", "b:1"}},
		{"any among others", []string{"a,any", "b"}, true, []string{"a", "b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := ParseTrust(c.in)
			if err != nil {
				t.Fatalf("ParseTrust(%q): %v", c.in, err)
			}
			if tr.any != c.any {
				t.Errorf("any = %v, want %v", tr.any, c.any)
			}
			if len(tr.names) != len(c.want) {
				t.Errorf("names %v, want %v", tr.names, c.want)
			}
			for _, n := range c.want {
				if !tr.names[n] {
					t.Errorf("%q not trusted; names %v", n, tr.names)
				}
			}
		})
	}
}

func TestParseTrustRejects(t *testing.T) {
	for _, c := range []struct {
		in  []string
		bad string
	}{
		{[]string{"not an id!"}, "not an id!"},
		{[]string{"a,not an id!,b"}, "not an id!"},
		{[]string{"ok", "a.b"}, "a.b"}, // neither an id nor host:port
		{[]string{"host.example"}, "host.example"},
		{[]string{"hé:1"}, "hé:1"},
		{[]string{"a b:1"}, "a b:1"},
		{[]string{"ANY!"}, "ANY!"},
		{[]string{strings.Repeat("a", maxIDLen+1)}, strings.Repeat("a", maxIDLen+1)},
		{[]string{"h:" + strings.Repeat("1", maxAddrLen)}, "h:" + strings.Repeat("1", maxAddrLen)},
	} {
		t.Run(c.bad, func(t *testing.T) {
			tr, err := ParseTrust(c.in)
			if err == nil {
				t.Fatalf("ParseTrust(%q) accepted: %+v", c.in, tr)
			}
			if want := `--follower "` + c.bad + `"`; !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
		})
	}
}

func TestTrustVouch(t *testing.T) {
	listed, err := ParseTrust([]string{"f1", "10.0.0.1:7000"})
	if err != nil {
		t.Fatal(err)
	}
	anyone, err := ParseTrust([]string{"any"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		trust Trust
		r     Report
		want  string
	}{
		{"listed id", listed, Report{ID: "f1", Addr: "elsewhere:1"}, "listed"},
		{"listed id no addr", listed, Report{ID: "f1"}, "listed"},
		{"listed addr", listed, Report{ID: "x", Addr: "10.0.0.1:7000"}, "listed"},
		{"unlisted", listed, Report{ID: "x", Addr: "10.0.0.2:7000"}, ""},
		{"unlisted no addr", listed, Report{ID: "x"}, ""},
		{"id case matters", listed, Report{ID: "F1"}, ""},
		{"any", anyone, Report{ID: "x"}, "any"},
		{"any with listed id", func() Trust { t, _ := ParseTrust([]string{"any,f1"}); return t }(), Report{ID: "f1"}, "any"},
		{"zero trust", Trust{}, Report{ID: "f1", Addr: "10.0.0.1:7000"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.trust.vouch(c.r); got != c.want {
				t.Fatalf("vouch(%+v) = %q, want %q", c.r, got, c.want)
			}
		})
	}
}
