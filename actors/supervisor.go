package actors

import (
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"storesync/messages"
)

// supervisor is the engine's root actor: it spawns the Fetcher, Applier and
// ProofTracker, and keeps the view of the upstreams' tips the Fetcher
// reports. Their
// failures are handled by restartStrategy.
type supervisor struct {
	e   *Engine
	cfg *Config
}

func newSupervisor(e *Engine, cfg *Config) *supervisor { return &supervisor{e: e, cfg: cfg} }

// Receive implements actor.Actor.
func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.cfg.Hooks.started(SupervisorName)
		// The PIDs are known before anything is spawned (children are
		// named), so each actor can be given all the others at birth.
		peers := &peers{
			fetcher:      childPID(ctx.Self(), FetcherName),
			applier:      childPID(ctx.Self(), ApplierName),
			proofTracker: childPID(ctx.Self(), ProofTrackerName),
			supervisor:   ctx.Self(),
		}
		// Applier and ProofTracker first: the Fetcher's first deliveries
		// then find them there.
		for _, c := range []struct {
			name string
			make func() actor.Actor
		}{
			{ApplierName, func() actor.Actor { return newApplier(s.e, s.cfg, peers) }},
			{ProofTrackerName, func() actor.Actor { return newProofTracker(s.e, s.cfg, peers) }},
			{FetcherName, func() actor.Actor { return newFetcher(s.e, s.cfg, peers) }},
		} {
			if _, err := ctx.SpawnNamed(actor.PropsFromProducer(c.make), c.name); err != nil {
				s.e.fail(fmt.Errorf("spawn %s: %w", c.name, err))
			}
		}
		// Only now may the workers send to one another: protoactor registers
		// a PID before its mailbox is ready, so a message to a sibling that
		// is still being spawned races with the spawn.
		peers.ready.Store(true)
		ctx.Send(peers.fetcher, begin{})
	case *actor.Restarting, *actor.Stopping, *actor.Stopped:
	default:
		s.cfg.Hooks.receive(SupervisorName, m)
		s.handle(m)
	}
}

func (s *supervisor) handle(msg any) {
	switch m := msg.(type) {
	case reload:
		// After a failure: the view it publishes holds nothing a failure
		// can have left half done (each update is one atomic swap), and the
		// tips are the store's, so there is nothing to rebuild.
	case *messages.UpstreamTip:
		s.update(func(v *View) {
			v.Upstreams[m.Upstream] = max(v.Upstreams[m.Upstream], m.Tip)
			v.UpstreamTip = max(v.UpstreamTip, m.Tip)
		})
	}
}

// update publishes a modified copy of the view; readers never see it change.
func (s *supervisor) update(f func(v *View)) {
	old := s.e.view.Load()
	v := *old
	v.Upstreams = maps.Clone(old.Upstreams)
	f(&v)
	v.Updated = time.Now()
	s.e.view.Store(&v)
}

// peers are the PIDs every worker may send to.
type peers struct {
	fetcher, applier, proofTracker, supervisor *actor.PID
	ready                                      atomic.Bool // all three spawned
}

// begin tells the Fetcher, once all workers are spawned, to start fetching.
type begin struct{}

// reload tells the Supervisor, resumed after a failure, to rebuild its view.
type reload struct{}

// supervisorGuardian handles failures of the Supervisor itself. Restarting
// it the protoactor way would stop and respawn its three children, so it is
// resumed instead and told to rebuild its state (the view of the tips) from
// the store: the same effect as a restart for the Supervisor, while the
// other actors keep their PIDs and their work. The RestartPolicy still
// bounds how often, and gives up the same way.
type supervisorGuardian struct {
	e   *Engine
	cfg *Config
}

// HandleFailure implements actor.SupervisorStrategy.
func (g *supervisorGuardian) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	rs.Fail()
	failures := rs.NumberOfFailures(g.cfg.Restart.Window)
	delay, giveUp := g.cfg.Restart.Decide(failures)
	if giveUp {
		g.cfg.Log.Error("restart limit reached", "actor", SupervisorName, "failures", failures, "reason", fmt.Sprint(reason))
		sup.StopChildren(child)
		g.e.fail(fmt.Errorf("actor %s failed %d times within %s (last: %v); giving up", SupervisorName, failures, g.cfg.Restart.Window, reason))
		return
	}
	g.cfg.Log.Warn("actor failed; restarting it alone", "actor", SupervisorName, "failures", failures, "delay", delay, "reason", fmt.Sprint(reason))
	g.e.restarted(SupervisorName, g.cfg.Metrics)
	time.AfterFunc(delay, func() {
		system.Root.Send(child, reload{})
		sup.ResumeChildren(child)
	})
}

// restartStrategy applies the RestartPolicy one for one: only the failed
// child is restarted, after the policy's delay; when the policy gives up,
// the child is stopped and the engine fails with a clear error.
type restartStrategy struct {
	e   *Engine
	cfg *Config
}

func newRestartStrategy(e *Engine, cfg *Config) *restartStrategy {
	return &restartStrategy{e: e, cfg: cfg}
}

// HandleFailure implements actor.SupervisorStrategy.
func (r *restartStrategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, message any) {
	rs.Fail()
	failures := rs.NumberOfFailures(r.cfg.Restart.Window)
	name := actorName(child)
	delay, giveUp := r.cfg.Restart.Decide(failures)
	if giveUp {
		err := fmt.Errorf("actor %s failed %d times within %s (last: %v); giving up", name, failures, r.cfg.Restart.Window, reason)
		r.cfg.Log.Error("restart limit reached", "actor", name, "failures", failures, "reason", fmt.Sprint(reason))
		sup.StopChildren(child)
		r.e.fail(err)
		return
	}
	r.cfg.Log.Warn("actor failed; restarting it alone", "actor", name, "failures", failures, "delay", delay, "reason", fmt.Sprint(reason), "message", fmt.Sprintf("%T", message))
	r.e.restarted(name, r.cfg.Metrics)
	time.AfterFunc(delay, func() { sup.RestartChildren(child) })
}

func actorName(pid *actor.PID) string {
	id := pid.Id
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}
