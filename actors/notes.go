package actors

import "time"

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

// notesAt returns the notes that still hold at now: backoffs and
// suspicions that have ended are left out, and upstreams with nothing left.
func notesAt(all map[string]UpstreamNote, now time.Time) map[string]UpstreamNote {
	m := make(map[string]UpstreamNote, len(all))
	for name, u := range all {
		if !now.Before(u.BackedOffUntil) {
			u.BackedOffUntil = time.Time{}
		}
		if !now.Before(u.SuspectUntil) {
			u.Suspect, u.SuspectUntil = "", time.Time{}
		}
		if u != (UpstreamNote{}) {
			m[name] = u
		}
	}
	return m
}
