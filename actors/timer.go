package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// selfTimer sends one message to its actor when the time its core asked
// for comes: the one timer pattern every actor shell uses. The cores keep
// track of what they armed; the shell only moves the timer.
type selfTimer struct{ t *time.Timer }

func newSelfTimer(ctx actor.Context, msg any) *selfTimer {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	t := time.AfterFunc(time.Hour, func() { root.Send(self, msg) })
	t.Stop()
	return &selfTimer{t: t}
}

// at makes the timer fire at t (zero: leave it as it is).
func (s *selfTimer) at(t time.Time) {
	if !t.IsZero() {
		s.t.Reset(max(time.Until(t), 0))
	}
}

func (s *selfTimer) stop() {
	if s != nil {
		s.t.Stop()
	}
}
