package actors

import "time"

// RestartPolicy decides what the Supervisor does when a child fails: restart
// it alone after a capped exponential backoff, or, when it failed more than
// Limit times within Window, give up and stop the engine with a fatal error
// (a restart loop that never ends hides a bug and burns the machine).
type RestartPolicy struct {
	Initial time.Duration // delay before the first restart
	Max     time.Duration // cap on the delay
	Limit   int           // failures tolerated within Window
	Window  time.Duration
}

// DefaultRestartPolicy: quick first restarts, at most 10 failures a minute.
var DefaultRestartPolicy = RestartPolicy{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Limit: 10, Window: time.Minute}

// Decide returns the restart delay for a child that has now failed
// `failures` times within the window (this failure included), or giveUp.
func (p RestartPolicy) Decide(failures int) (delay time.Duration, giveUp bool) {
	if failures > p.Limit {
		return 0, true
	}
	return doubling(failures, p.Initial, p.Max), false
}
