package election

import (
	"hash/fnv"
	"time"
)

// Even spread and graceful degradation (issue 11), all opt-in through
// Config so the elector's default behaviour is unchanged:
//
//   - RankDelay: a free Lease is taken first by the node ranked highest by
//     rendezvous hashing of (Lease, node) among the live holders this node
//     sees (and itself); the node ranked r waits r × RankDelay from when it
//     saw the Lease free. VIPs spread evenly instead of going to whoever
//     writes first.
//   - SpreadRenewals: the first renewal after an acquisition comes at a
//     point of the renew period given by the Lease's hash (between half and
//     all of RetryPeriod), so Leases taken together are not renewed
//     together for ever after.
//   - MaxAcquiring: at most this many acquisitions are in flight; while a
//     renewal has failed, or was answered after more than half a
//     RetryPeriod, within the last RetryPeriod, acquisitions back off.
//     Renewals of held Leases go first when the API server cannot keep up.
//   - MaxHeld: this node holds (and is acquiring) at most this many Leases,
//     each costing one renewal per RetryPeriod of its write budget; a free
//     Lease beyond them waits until a hold ends. Past what the budget
//     carries, Services stay unannounced instead of every hold flapping.

// Rendezvous is the rendezvous weight of (key, node): among the candidate
// nodes, the highest weight wins the key.
func Rendezvous(key Key, node string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key.Namespace + "/" + key.Name + "\x00" + node))
	return mix(h.Sum64())
}

// Outranks reports whether node a ranks above node b for key: the higher
// rendezvous weight, ties to the smaller name. Every ranking of the
// election (rank delays, successors) is this one order.
func Outranks(key Key, a, b string) bool {
	wa, wb := Rendezvous(key, a), Rendezvous(key, b)
	return wa > wb || (wa == wb && a < b)
}

// mix spreads FNV's output over all 64 bits (splitmix64's finaliser), so
// names that differ in one last digit do not rank alike.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// rankWait returns when this node may take key's free Lease, seen free
// since since; gone is the holder that released or lost it (it ranks
// last). Zero RankDelay: at once.
func (e *Elector) rankWait(key Key, gone string, since, now time.Time) time.Time {
	if e.cfg.RankDelay <= 0 {
		return time.Time{}
	}
	rank := 0
	for _, peer := range e.livePeers(now) {
		if peer != e.cfg.Identity && peer != gone && Outranks(key, peer, e.cfg.Identity) {
			rank++
		}
	}
	return since.Add(time.Duration(rank) * e.cfg.RankDelay)
}

// livePeers lists Config.Peers and the holders of the Leases this node sees
// that have not expired by its observation (those also in e.holders, with
// since when each has been seen holding one without a gap), recomputed at
// most every RankDelay.
func (e *Elector) livePeers(now time.Time) []string {
	var extra []string
	if e.cfg.Peers != nil {
		extra = e.cfg.Peers()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.peersAt.IsZero() && now.Sub(e.peersAt) < e.cfg.RankDelay {
		return append([]string(nil), e.peers...)
	}
	seen := map[string]bool{}
	e.peers = e.peers[:0]
	for _, p := range extra {
		if !seen[p] {
			seen[p] = true
			e.peers = append(e.peers, p)
		}
	}
	holders := map[string]time.Time{}
	for _, o := range e.observed {
		if !valid(o, now) {
			continue
		}
		if _, ok := holders[o.holder]; !ok {
			since, before := e.holders[o.holder]
			if !before {
				since = now
			}
			holders[o.holder] = since
		}
		if !seen[o.holder] {
			seen[o.holder] = true
			e.peers = append(e.peers, o.holder)
		}
	}
	e.holders = holders
	e.peersAt = now
	return append([]string(nil), e.peers...)
}

// firstRenewal is when to renew a Lease first after acquiring it at sent.
func (e *Elector) firstRenewal(key Key, sent time.Time) time.Time {
	if !e.cfg.SpreadRenewals {
		return sent.Add(e.cfg.RetryPeriod)
	}
	frac := float64(Rendezvous(key, e.cfg.Identity)>>11) / float64(1<<53)
	return sent.Add(e.cfg.RetryPeriod/2 + time.Duration(frac*float64(e.cfg.RetryPeriod/2)))
}

// mayAcquire takes an acquisition slot for r, or says when to try again:
// while a renewal failed (or was slow) within the last RetryPeriod, or
// MaxAcquiring are in flight; zero retry when this node is full (MaxHeld):
// r is woken when a hold ends. Called from r's step (r.freeAt is its
// own). acquired must be called after the write when ok.
func (e *Elector) mayAcquire(r *race, now time.Time) (ok bool, retry time.Time) {
	if e.cfg.MaxAcquiring <= 0 && e.cfg.MaxHeld <= 0 {
		return true, time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.renewFailed.IsZero() && now.Before(e.renewFailed.Add(e.cfg.RetryPeriod)):
		return false, e.renewFailed.Add(e.cfg.RetryPeriod)
	case e.cfg.MaxAcquiring > 0 && e.acquiring >= e.cfg.MaxAcquiring:
		return false, now.Add(e.cfg.RetryPeriod / 4)
	case e.cfg.MaxHeld > 0 && e.held+e.acquiring >= e.cfg.MaxHeld:
		e.waitLocked(r, r.freeAt)
		return false, time.Time{}
	}
	e.acquiring++
	return true, time.Time{}
}

// waitLocked puts r among the races waiting for room; mu must be held. Its
// wait may be told (Waiting) once every other candidate had its chance at
// the Lease (a RetryPeriod and every rank delay after it was seen free),
// and its key is notified then, once per wait.
func (e *Elector) waitLocked(r *race, freeAt time.Time) {
	tellAt := freeAt.Add(e.cfg.RetryPeriod + time.Duration(len(e.peers))*e.cfg.RankDelay)
	e.waiting[r] = tellAt
	e.setFullLocked(true)
	if r.tell == nil {
		key := r.key
		r.tell = e.clock.AfterFunc(tellAt, func() { e.notify(key) })
	}
}

// stopTellLocked ends r's wait-telling timer; mu must be held.
func (e *Elector) stopTellLocked(r *race) {
	if r.tell != nil {
		r.tell.Stop()
		r.tell = nil
	}
}

// acquired ends an acquisition taken by mayAcquire.
func (e *Elector) acquired() {
	if e.cfg.MaxAcquiring <= 0 && e.cfg.MaxHeld <= 0 {
		return
	}
	e.mu.Lock()
	e.acquiring--
	e.roomLocked()
	e.mu.Unlock()
}

// countHoldLocked moves the count of held Leases as r's hold starts or
// ends; mu must be held.
func (e *Elector) countHoldLocked(r *race, held bool) {
	switch {
	case held && !r.held:
		e.held++
	case !held && r.held:
		e.held--
		e.roomLocked()
	}
}

// roomLocked wakes the races waiting for room under MaxHeld once there is
// some; mu must be held.
func (e *Elector) roomLocked() {
	if e.cfg.MaxHeld <= 0 || e.held+e.acquiring >= e.cfg.MaxHeld {
		return
	}
	e.setFullLocked(false)
	for r := range e.waiting {
		wakeUp(r)
		delete(e.waiting, r)
	}
}

// Waiting reports whether key's Lease was free for this node to take, at
// the race's last look, but this node holds as many as MaxHeld allows, and
// no other candidate took it in the time it had: the race waits for room.
// The key is notified when that becomes true.
func (e *Elector) Waiting(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.races[key]
	if r == nil {
		return false
	}
	at, ok := e.waiting[r]
	return ok && !e.clock.Now().Before(at)
}

// setFullLocked logs and reports a change of being full; mu must be held.
func (e *Elector) setFullLocked(full bool) {
	if e.full == full {
		return
	}
	e.full = full
	if full {
		e.log.Warn("holding as many Leases as the write budget renews: further Services wait until a hold ends",
			"held", e.held, "max", e.cfg.MaxHeld)
	} else {
		e.log.Info("room for more Leases", "held", e.held, "max", e.cfg.MaxHeld)
	}
	if e.cfg.Full != nil {
		e.cfg.Full(full)
	}
}

// renewed notes how long a renewal sent at sent took to be answered (err:
// not at all): a failed one, or one answered after more than half a
// RetryPeriod, makes acquisitions back off a while.
func (e *Elector) renewed(sent time.Time, err error) {
	now := e.clock.Now()
	if err == nil && now.Sub(sent) <= e.cfg.RetryPeriod/2 {
		return
	}
	e.mu.Lock()
	e.renewFailed = now
	e.mu.Unlock()
}
