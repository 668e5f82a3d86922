package state

import "testing"

// TestChecksListsEverySentinel: Checks, what metrics export from the start,
// holds every check that has a sentinel, once.
func TestChecksListsEverySentinel(t *testing.T) {
	seen := map[Check]bool{}
	for _, c := range Checks {
		if seen[c] {
			t.Errorf("check %q listed twice", c)
		}
		seen[c] = true
		if sentinels[c] == nil {
			t.Errorf("check %q has no sentinel", c)
		}
	}
	for c := range sentinels {
		if !seen[c] {
			t.Errorf("check %q is missing from Checks", c)
		}
	}
}
