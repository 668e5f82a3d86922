package sim

import "time"

// The design note's naive loop, for comparison: every poll interval it
// asks tip+1 with its proof and, while a proof is missing, proven+1 with
// its proof; one call at a time each, applied in order.
func (f *follower) naiveStart() {
	poll := f.w.cfg.Engine.PollInterval
	var blockLoop, proofLoop func()
	blockLoop = func() {
		n := f.committed + 1
		if n >= uint64(len(f.w.commitAt)) {
			return
		}
		f.naiveCall(n, func(ok, proof bool) {
			if ok {
				f.committed = n
				f.commitAt[n] = f.w.now + f.w.cfg.ApplyTime
				if f.settled() {
					f.st.blocksSettled++
				}
				if proof && f.proven == n-1 {
					f.proven, f.provenAt[n] = n, f.w.now+f.w.cfg.ApplyTime
				}
				f.w.at(f.w.now+f.w.cfg.ApplyTime, blockLoop)
				return
			}
			f.w.at(f.w.now+poll, blockLoop)
		})
	}
	proofLoop = func() {
		n := f.proven + 1
		if n >= uint64(len(f.w.commitAt)) {
			return
		}
		if n > f.committed {
			f.w.at(f.w.now+poll, proofLoop)
			return
		}
		f.naiveCall(n, func(ok, proof bool) {
			if ok && proof && f.proven == n-1 {
				f.proven, f.provenAt[n] = n, f.w.now+f.w.cfg.ProofApplyTime
				f.w.at(f.w.now+f.w.cfg.ProofApplyTime, proofLoop)
				return
			}
			f.w.at(f.w.now+poll, proofLoop)
		})
	}
	f.w.at(0, blockLoop)
	f.w.at(0, proofLoop)
	// At a phase of its own: a poll in step with the blocks would see each at once.
	f.w.at(time.Duration(f.rng.Int64N(int64(f.w.cfg.HealthInterval))), f.healthPoll)
}

// naiveCall asks the first link for block n with its proof.
func (f *follower) naiveCall(n uint64, then func(ok, proof bool)) {
	l := f.links[0]
	f.st.callsAll[0]++
	if f.steady() {
		f.st.calls[0]++
	}
	rtt := l.RTT
	if l.Jitter > 0 {
		rtt += time.Duration(f.rng.Int64N(int64(l.Jitter)))
	}
	has, hasProof := f.serverHas(l.Of, n, f.w.now+rtt/2)
	if has {
		f.st.fetchedBytes += int64(f.w.size[n])
		if l.Bandwidth > 0 {
			rtt += time.Duration(float64(f.w.size[n]) / l.Bandwidth * float64(time.Second))
		}
	}
	if hasProof {
		f.st.fetchedBytes += int64(f.w.cfg.ProofSize)
	}
	f.w.at(f.w.now+rtt, func() { then(has, hasProof) })
}
