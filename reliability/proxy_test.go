package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// proxy is a toxiproxy on loopback between a follower and one of its
// upstreams, run in-process, so a test can add and remove network faults
// (toxics) or cut the link whole.
type proxy struct {
	t    testing.TB
	p    *toxiproxy.Proxy
	addr string
}

// startProxy listens on a free loopback port and forwards to target; it
// stops with the test.
func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	// Some toxics trace through zerolog's global logger, to stderr.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "upstream", "127.0.0.1:0", target)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy to %s: %v", target, err)
	}
	t.Cleanup(p.Stop)
	// Kept here: the proxy rewrites its Listen field each time it starts.
	return &proxy{t: t, p: p, addr: p.Listen}
}

// Addr is where clients connect; it stays the same across disable/enable.
func (x *proxy) Addr() string { return x.addr }

// add installs a toxic of the given type on one stream ("upstream" is
// client to server, "downstream" server to client).
func (x *proxy) add(name, kind, stream string, attrs map[string]any) *toxics.ToxicWrapper {
	x.t.Helper()
	body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream, "attributes": attrs})
	if err != nil {
		x.t.Fatalf("toxic %s: %v", name, err)
	}
	w, err := x.p.Toxics.AddToxicJson(bytes.NewReader(body))
	if err != nil {
		x.t.Fatalf("add toxic %s to %s: %v", name, x.addr, err)
	}
	return w
}

// both installs the same toxic on both streams, named name_up and
// name_down.
func (x *proxy) both(name, kind string, attrs map[string]any) {
	x.t.Helper()
	x.add(name+"_up", kind, "upstream", attrs)
	x.add(name+"_down", kind, "downstream", attrs)
}

// remove takes a toxic away; timeout closes the connections it held as it
// goes, as a mended network would not.
func (x *proxy) remove(names ...string) {
	x.t.Helper()
	for _, name := range names {
		if err := x.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			x.t.Fatalf("remove toxic %s from %s: %v", name, x.addr, err)
		}
	}
}

// removeBoth undoes both.
func (x *proxy) removeBoth(name string) { x.remove(name+"_up", name+"_down") }

// silence makes every connection open now drop all it carries, both ways,
// without closing, while connections opened later work: an established
// connection gone dead with no reset (the upstream's host replaced at the
// same address, a NAT or balancer on the path that forgot it) although
// the upstream itself is fine. TCP sees nothing wrong on such a
// connection, so only the client can notice. Lifted with
// removeBoth("silent").
func (x *proxy) silence() {
	x.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		w := x.add("silent_"+strings.TrimSuffix(stream, "stream"), "silent", stream, map[string]any{})
		// The connections open until now got their state as it was added.
		w.Toxic.(*silentToxic).armed.Store(true)
	}
}

// silentToxic drops everything on the connections that were open when it
// was added and passes the others untouched.
type silentToxic struct {
	armed atomic.Bool // set once the connections open when added are marked
}

type silentState struct{ dead bool }

// NewState is called for each connection open when the toxic is added,
// and for each one opened later.
func (s *silentToxic) NewState() any { return &silentState{dead: !s.armed.Load()} }

func (s *silentToxic) Pipe(stub *toxics.ToxicStub) {
	dead := stub.State.(*silentState).dead
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !dead {
				stub.Output <- c
			}
		}
	}
}

func init() { toxics.Register("silent", new(silentToxic)) }

// disable closes the listener and every connection through it: clients
// see connections refused until enable.
func (x *proxy) disable() { x.p.Stop() }

// enable listens again on the same address.
func (x *proxy) enable() {
	x.t.Helper()
	x.p.Listen = x.addr
	if err := x.p.Start(); err != nil {
		x.t.Fatalf("restart toxiproxy on %s: %v", x.addr, err)
	}
}
