package api

import (
	"encoding/json"
	"net/http"
	"time"

	"storesync/replicas"
)

// NodeStatus is the JSON every node serves at /status on its HTTP listener,
// read by operators, scripts and `follower status`.
type NodeStatus struct {
	Role        string            `json:"role"` // "primary" or "follower"
	Chain       string            `json:"chain"`
	Committed   uint64            `json:"committed_tip"`
	Proven      uint64            `json:"proven_tip"`
	Ready       bool              `json:"ready"`
	LagKnown    bool              `json:"lag_known"`
	Lag         uint64            `json:"lag"`
	ChainTip    uint64            `json:"chain_tip"`
	ChainTipSrc string            `json:"chain_tip_from,omitempty"`
	MaxLag      *uint64           `json:"max_lag,omitempty"` // a follower's --max-lag: ready iff lag <= it; absent on a primary
	Reason      string            `json:"health"`
	Upstreams   map[string]uint64 `json:"upstreams,omitempty"`       // tip served, per upstream
	Problems    map[string]string `json:"source_problems,omitempty"` // why an upstream or peer's tip does not count now
	UpstreamTip uint64            `json:"upstream_tip,omitempty"`
	// what the sync engine holds against an upstream now
	UpstreamNotes    map[string]UpstreamNote `json:"upstream_problems,omitempty"`
	Restarts         map[string]int          `json:"actor_restarts,omitempty"`
	Fetched          int64                   `json:"fetched_bytes,omitempty"`
	UsefulBytes      int64                   `json:"useful_bytes,omitempty"`       // the first copy of each block delivered, and each proof verified
	FetchedPerUseful float64                 `json:"fetched_per_useful,omitempty"` // Fetched / UsefulBytes (1: nothing wasted); 0 while UsefulBytes is
	ProofBytes       int64                   `json:"proof_bytes,omitempty"`
	Redundant        int64                   `json:"redundant_bytes,omitempty"`
	Rejected         int64                   `json:"rejected_blocks,omitempty"`
	Updated          time.Time               `json:"updated"`
	// The stores below this one, from their reports, and the replicated
	// watermarks (store_id, followers, replicated_watermark).
	replicas.Status
}

// UpstreamNote is what a follower's sync engine holds against an upstream:
// its last failed call or bad answer (until it answers well again), until
// when it is not asked (backed off), and until when it is asked last
// (suspect) and why.
type UpstreamNote struct {
	Problem        string    `json:"problem,omitempty"`
	BackedOffUntil time.Time `json:"backed_off_until,omitzero"`
	Suspect        string    `json:"suspect,omitempty"`
	SuspectUntil   time.Time `json:"suspect_until,omitzero"`
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
