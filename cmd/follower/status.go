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
	"strings"
	"text/tabwriter"
	"time"

	"storesync/api"
	"storesync/health"
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
}

func statusCmd(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	var stores listFlag
	fs.Var(&stores, "store", "HTTP address of a store's /status (host:port or URL); repeat for each store")
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
	if rep.Confirmed {
		fmt.Fprintf(w, "replicated watermark: block %d is committed on at least %d followers (highest tip %d)\n", rep.Watermark, rep.MinCopies, rep.Highest)
	} else {
		fmt.Fprintf(w, "replicated watermark: unknown: fewer than %d followers answered\n", rep.MinCopies)
	}
}
