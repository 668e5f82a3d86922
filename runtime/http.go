package runtime

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Status is the JSON of /status.
type Status struct {
	Chain       string            `json:"chain"`
	Committed   uint64            `json:"committed_tip"`
	Proven      uint64            `json:"proven_tip"`
	UpstreamTip uint64            `json:"upstream_tip"`
	Upstreams   map[string]uint64 `json:"upstreams"`
	Restarts    map[string]int    `json:"actor_restarts"`
	Fetched     int64             `json:"fetched_bytes"`
	ProofBytes  int64             `json:"proof_bytes"`
	Redundant   int64             `json:"redundant_bytes"`
	Rejected    int64             `json:"rejected_blocks"`
	Updated     time.Time         `json:"updated"`
	Ready       bool              `json:"ready"`
	LagKnown    bool              `json:"lag_known"`
	Lag         uint64            `json:"lag"`
	ChainTip    uint64            `json:"chain_tip"`
	ChainTipSrc string            `json:"chain_tip_from"`
	Reason      string            `json:"health"`
}

// Status returns the follower's status: tips from its store, the rest from
// the engine's view.
func (f *Follower) Status() Status {
	c, p := f.st.Tips()
	s := Status{Chain: f.st.Genesis().ChainID, Committed: c, Proven: p}
	if f.engine != nil {
		v := f.engine.View()
		st := f.engine.Stats()
		s.UpstreamTip, s.Upstreams, s.Restarts, s.Updated = v.UpstreamTip, v.Upstreams, v.Restarts, v.Updated
		s.Fetched, s.ProofBytes, s.Redundant, s.Rejected = st.FetchedBytes.Load(), st.ProofBytes.Load(), st.RedundantBytes.Load(), st.Rejected.Load()
	}
	h := f.Health()
	s.Ready, s.LagKnown, s.Lag, s.ChainTip, s.ChainTipSrc, s.Reason = h.Ready, h.LagKnown, h.Lag, h.ChainTip, h.From, h.Reason
	return s
}

// handler serves /livez, /readyz (200 or 503 with the reason) and /status.
func (f *Follower) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := f.Health()
		if !h.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", h.Reason)
			return
		}
		fmt.Fprintf(w, "ready: %s\n", h.Reason)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(f.Status())
	})
	return mux
}
