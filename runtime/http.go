package runtime

import (
	"storesync/api"

	"fmt"
	"net/http"
	"time"
)

// Status returns the follower's status: tips from its store, the rest from
// the engine's view and the health poller.
func (f *Follower) Status() api.NodeStatus {
	c, p := f.st.Tips()
	s := api.NodeStatus{Role: "follower", Chain: f.st.Genesis().ChainID, Committed: c, Proven: p, Updated: time.Now()}
	if f.engine != nil {
		v := f.engine.View()
		st := f.engine.Stats()
		s.UpstreamTip, s.Upstreams, s.Restarts = v.UpstreamTip, v.Upstreams, v.Restarts
		// Useful first: the Fetcher counts a call's bytes as fetched before
		// it counts them useful, so the ratio read so is never below 1.
		s.UsefulBytes = st.UsefulBytes.Load()
		s.Fetched, s.ProofBytes, s.Redundant, s.Rejected = st.FetchedBytes.Load(), st.ProofBytes.Load(), st.RedundantBytes.Load(), st.Rejected.Load()
		if s.UsefulBytes > 0 {
			s.FetchedPerUseful = float64(s.Fetched) / float64(s.UsefulBytes)
		}
		for name, n := range f.engine.UpstreamNotes() {
			if s.UpstreamNotes == nil {
				s.UpstreamNotes = map[string]api.UpstreamNote{}
			}
			s.UpstreamNotes[name] = api.UpstreamNote(n)
		}
	}
	h := f.Health()
	s.Ready, s.LagKnown, s.Lag, s.ChainTip, s.ChainTipSrc, s.Reason = h.Ready, h.LagKnown, h.Lag, h.ChainTip, h.From, h.Reason
	maxLag := f.cfg.Health.MaxLag
	s.MaxLag = &maxLag
	s.Problems = f.poller.Problems()
	s.Status = f.replicas.Status()
	return s
}

// handler serves /livez, /readyz (200 or 503 with the reason), /status and
// the status page (/ and /status/history, made in New; Start runs its
// sampler).
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
	mux.Handle("GET /metrics", f.metrics.Handler())
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { api.WriteJSON(w, f.Status()) })
	f.page.Mount(mux)
	return mux
}
