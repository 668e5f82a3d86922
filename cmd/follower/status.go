package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"storesync/api"
	"storesync/health"
	"storesync/replicas"
)

// row is one store in `follower status`.
type row struct {
	Store  string          `json:"store"`
	Status *api.NodeStatus `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
	Lag    uint64          `json:"lag_behind_highest"` // behind the highest tip of the stores listed
}

// report is the whole answer of `follower status`.
type report struct {
	Stores    []row  `json:"stores"`
	Highest   uint64 `json:"highest_committed"`
	MinCopies int    `json:"min_copies"`
	Watermark uint64 `json:"replicated_watermark"` // highest block committed on at least MinCopies followers
	Confirmed bool   `json:"watermark_known"`
	// WatermarkFrom is the store whose table of reports gave the
	// watermark, when fewer than MinCopies followers were listed; empty:
	// computed from the stores listed.
	WatermarkFrom string `json:"watermark_from,omitempty"`
}

func statusCmd(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	var stores listFlag
	fs.Var(&stores, "store", "HTTP address of a store's /status (host:port or URL); repeat for each store, or give the primary alone: its table of reports shows the whole tree")
	k := fs.Int("min-copies", 2, "the replicated watermark counts blocks committed on at least this many followers")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 3*time.Second, "timeout per store")
	_ = fs.Parse(args)
	if len(stores) == 0 {
		return fmt.Errorf("give at least one --store")
	}
	rep := collect(context.Background(), stores, *k, *timeout)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	render(os.Stdout, rep)
	return nil
}

// collect asks every store for its status, concurrently.
func collect(ctx context.Context, stores []string, k int, timeout time.Duration) report {
	rep := report{Stores: make([]row, len(stores)), MinCopies: k}
	done := make(chan struct{}, len(stores))
	for i, s := range stores {
		go func() {
			defer func() { done <- struct{}{} }()
			rep.Stores[i] = fetchStatus(ctx, s, timeout)
		}()
	}
	for range stores {
		<-done
	}
	var followers []uint64
	for _, r := range rep.Stores {
		if r.Status != nil {
			rep.Highest = max(rep.Highest, r.Status.Committed)
			if r.Status.Role == "follower" {
				followers = append(followers, r.Status.Committed)
			}
		}
	}
	for i := range rep.Stores {
		if st := rep.Stores[i].Status; st != nil {
			rep.Stores[i].Lag = rep.Highest - st.Committed
		}
	}
	rep.Watermark, rep.Confirmed = health.Watermark(followers, k)
	if len(followers) < k {
		// Too few followers listed: a store's own table knows the stores
		// below it from their reports, the primary's the whole tree.
		for _, r := range rep.Stores {
			if st := r.Status; st != nil && st.Watermarks != nil && (rep.WatermarkFrom == "" || st.Role == "primary") {
				wm := st.Watermarks[strconv.Itoa(k)]
				rep.WatermarkFrom = r.Store
				rep.Confirmed = wm != nil
				if wm != nil {
					rep.Watermark = *wm
				}
			}
		}
	}
	return rep
}

func fetchStatus(ctx context.Context, store string, timeout time.Duration) row {
	r := row{Store: store}
	url := store
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	if !strings.HasSuffix(url, "/status") {
		url = strings.TrimSuffix(url, "/") + "/status"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.Error = resp.Status
		return r
	}
	st := &api.NodeStatus{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(st); err != nil {
		r.Error = fmt.Sprintf("bad status: %v", err)
		return r
	}
	r.Status = st
	return r
}

func render(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORE\tROLE\tCOMMITTED\tPROVEN\tLAG\tREADY\tUPSTREAM\tHEALTH")
	for _, r := range rep.Stores {
		if r.Status == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tunreachable: %s\n", r.Store, r.Error)
			continue
		}
		s := r.Status
		ups := make([]string, 0, len(s.Upstreams))
		for u := range s.Upstreams {
			ups = append(ups, u)
		}
		slices.Sort(ups)
		upstream := strings.Join(ups, ",")
		if upstream == "" {
			upstream = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%v\t%s\t%s\n", r.Store, s.Role, s.Committed, s.Proven, r.Lag, s.Ready, upstream, s.Reason)
	}
	tw.Flush()
	for _, r := range rep.Stores {
		if r.Status != nil && r.Status.Watermarks != nil {
			renderTree(w, r.Store, r.Status)
		}
	}
	switch {
	case rep.Confirmed && rep.WatermarkFrom != "":
		fmt.Fprintf(w, "replicated watermark: block %d is durable on at least %d followers, as reported to %s (highest tip %d)\n", rep.Watermark, rep.MinCopies, rep.WatermarkFrom, rep.Highest)
	case rep.Confirmed:
		fmt.Fprintf(w, "replicated watermark: block %d is committed on at least %d followers (highest tip %d)\n", rep.Watermark, rep.MinCopies, rep.Highest)
	case rep.WatermarkFrom != "":
		fmt.Fprintf(w, "replicated watermark: unknown: fewer than %d verified followers report to %s\n", rep.MinCopies, rep.WatermarkFrom)
	default:
		fmt.Fprintf(w, "replicated watermark: unknown: fewer than %d followers answered\n", rep.MinCopies)
	}
}

// renderTree prints the stores below one store, from its table of their
// reports: each under the store it reports to, then its watermarks.
func renderTree(w io.Writer, name string, s *api.NodeStatus) {
	fmt.Fprintf(w, "\nstores below %s (store %s), from their reports:\n", name, s.ID)
	if len(s.Followers) == 0 {
		fmt.Fprintln(w, "  none heard from")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STORE ID\tADDRESS\tDEPTH\tCOMMITTED\tPROVEN\tHEARD\tCOUNTS")
		children := map[string][]replicas.Row{}
		ids := map[string]bool{}
		for _, r := range s.Followers {
			children[r.Parent] = append(children[r.Parent], r)
			ids[r.ID] = true
		}
		done := map[string]bool{}
		var walk func(parent string, indent int)
		walk = func(parent string, indent int) {
			for _, r := range children[parent] {
				if done[r.ID] {
					continue
				}
				done[r.ID] = true
				heard := time.Since(r.Heard).Round(100 * time.Millisecond)
				counts := "no (unverified)"
				if r.Verified {
					counts = "yes (" + r.Subject + ")"
				}
				tips := fmt.Sprintf("%d\t%d", r.Committed, r.Proven)
				if r.Clamped {
					tips = fmt.Sprintf("%d*\t%d", r.Committed, r.Proven)
				}
				fmt.Fprintf(tw, "  %s%s\t%s\t%d\t%s\t%s ago\t%s\n", strings.Repeat("  ", indent), r.ID, r.Addr, r.Depth, tips, heard, counts)
				walk(r.ID, indent+1)
			}
		}
		walk(s.ID, 0)
		// Stores whose parent is not in the table (heard of through a
		// store that has since dropped out) go last, at their depth.
		for _, r := range s.Followers {
			if !done[r.ID] && !ids[r.Parent] {
				walk(r.Parent, r.Depth-1)
			}
		}
		tw.Flush()
	}
	ks := make([]string, 0, len(s.Watermarks))
	for k := range s.Watermarks {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	parts := make([]string, 0, len(ks))
	for _, k := range ks {
		if v := s.Watermarks[k]; v != nil {
			parts = append(parts, fmt.Sprintf("k=%s %d", k, *v))
		} else {
			parts = append(parts, fmt.Sprintf("k=%s none", k))
		}
	}
	fmt.Fprintf(w, "  watermarks (highest block durable on at least k of them): %s", strings.Join(parts, ", "))
	if s.LeftOut > 0 {
		fmt.Fprintf(w, " (%d stores left out of the reports)", s.LeftOut)
	}
	fmt.Fprintln(w)
	if slices.ContainsFunc(s.Followers, func(r replicas.Row) bool { return r.Clamped }) {
		fmt.Fprintln(w, "  (* claimed more than this store has: clamped)")
	}
}
