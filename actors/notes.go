package actors

import (
	"maps"
	"sync"
	"time"
)

// UpstreamNote is what the engine holds against an upstream now, for an
// operator: why it failed last, until when it is backed off, until when it
// is asked last (suspect) and why. Logs say each of these once, when it
// happens; this says which still hold.
type UpstreamNote struct {
	// Problem is its last failed call or bad answer, kept until it next
	// serves a block or answers that it lacks one.
	Problem        string
	BackedOffUntil time.Time
	Suspect        string // what it served that failed validation
	SuspectUntil   time.Time
}

// notes holds the engine's UpstreamNotes. The Fetcher and the ProofTracker
// write them (rarely: on failures and bad answers), the status page reads
// them. thread-safe.
type notes struct {
	mu sync.Mutex
	m  map[string]UpstreamNote
}

func (n *notes) update(name string, f func(*UpstreamNote)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]UpstreamNote{}
	}
	u := n.m[name]
	f(&u)
	if u == (UpstreamNote{}) {
		delete(n.m, name)
	} else {
		n.m[name] = u
	}
}

func (n *notes) problem(name, what string, backedOffUntil time.Time) {
	n.update(name, func(u *UpstreamNote) { u.Problem, u.BackedOffUntil = what, backedOffUntil })
}

// recovered: it answered well; its backoff is over.
func (n *notes) recovered(name string) {
	n.update(name, func(u *UpstreamNote) { u.Problem, u.BackedOffUntil = "", time.Time{} })
}

func (n *notes) suspect(name, why string, until time.Time) {
	n.update(name, func(u *UpstreamNote) { u.Suspect, u.SuspectUntil = why, until })
}

// at returns the notes that still hold at now: backoffs and suspicions
// that have ended are left out.
func (n *notes) at(now time.Time) map[string]UpstreamNote {
	n.mu.Lock()
	m := maps.Clone(n.m)
	n.mu.Unlock()
	for name, u := range m {
		if !now.Before(u.BackedOffUntil) {
			u.BackedOffUntil = time.Time{}
		}
		if !now.Before(u.SuspectUntil) {
			u.Suspect, u.SuspectUntil = "", time.Time{}
		}
		if u == (UpstreamNote{}) {
			delete(m, name)
		} else {
			m[name] = u
		}
	}
	return m
}
