package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-lb/vigil/pkg/agent"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/heartbeat"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/netif"
)

// electionOptions chooses how per-Service elections are run.
type electionOptions struct {
	mode      string        // "service" (one renewed Lease per Service) or "node" (pkg/heartbeat)
	spread    bool          // per-Service mode: rendezvous rank delay, spread renewals, renewals before acquisitions
	rebalance bool          // hand Services over to where the ranking puts them (pkg/agent rebalance.go)
	every     time.Duration // at most one handover per node per every
}

// defaultElectionMode is vigil_election_mode when unset.
const defaultElectionMode = "service"

// Per-Service mode's spread settings (with vigil_election_spread).
const (
	rankDelay    = 100 * time.Millisecond
	maxAcquiring = 16
)

// defaultRebalanceInterval is vigil_rebalance_interval when unset: two
// handovers a second per node at most.
const defaultRebalanceInterval = 500 * time.Millisecond

func electionSettings(o *electionOptions) []setting {
	return []setting{
		{"election-mode", []string{"vigil_election_mode"}, "per-Service election: service (each Service Lease renewed) or node (one heartbeat Lease per node; Service Leases written on ownership change only; needs svc_election=true)", str(&o.mode, defaultElectionMode)},
		{"election-spread", []string{"vigil_election_spread"}, "service mode: free Leases go first to the node ranked highest by rendezvous hashing (100 ms per rank), renewals spread over the period, acquisitions back off while renewals fail or lag, and a node holds at most what its write budget renews each retry period (120 Leases at 1 s; false: first writer wins, no limit)", boolean(&o.spread, true)},
		{"rebalance", []string{"vigil_rebalance"}, "hand Services over, one at a time, to the live node the election ranks first for them (e.g. after a rolling restart); needs svc_election=true (false: a Service stays with its holder)", boolean(&o.rebalance, false)},
		{"rebalance-interval", []string{"vigil_rebalance_interval"}, "with rebalance: at most one handover per node per interval (whole seconds or a duration such as 500ms)", secondsOrDuration(&o.every, defaultRebalanceInterval)},
	}
}

// validate checks the mode against the other settings. In service mode
// followers read a holder's lease from leaseDurationSeconds (whole seconds,
// rounded down by the writer): that must still end after the holder's renew
// deadline, or a follower could take over while the holder still announces.
// Node mode carries the exact durations in an annotation.
func (o *electionOptions) validate(perService bool, lease, renew, retry time.Duration) error {
	if err := checkElectionMode(o.mode); err != nil {
		return fmt.Errorf("vigil_election_mode=%w", err)
	}
	switch {
	case o.mode == "service" && max(lease.Truncate(time.Second), time.Second) <= renew:
		return fmt.Errorf("vip_leaseduration=%v is written to the Lease as %v (whole seconds), not longer than vip_renewdeadline=%v: use whole seconds, or vigil_election_mode=node for sub-second leases", lease, max(lease.Truncate(time.Second), time.Second), renew)
	case o.mode == "node" && !perService:
		return errors.New("vigil_election_mode=node needs svc_election=true: with one shared Lease there is nothing per Service to save")
	case o.rebalance && !perService:
		return errors.New("vigil_rebalance=true needs svc_election=true: with one shared Lease every Service is on one node")
	case o.rebalance && o.mode == "service" && !o.spread:
		return errors.New("vigil_rebalance=true needs vigil_election_spread=true: Services move to the node its ranking puts first")
	case o.rebalance && o.every <= 0:
		return fmt.Errorf("vigil_rebalance_interval=%v: must be positive", o.every)
	case o.mode == "node" && lease-min(lease/3, retry) < deadMansSwitch:
		return fmt.Errorf("vip_leaseduration=%v is too short for node mode: a VIP's kernel lifetime ends %v before the lease, counted from a heartbeat up to %v old; use at least %v",
			lease, deadMansSwitch, min(lease/3, retry), minNodeLease(retry))
	}
	return nil
}

// checkElectionMode rejects a mode the manager does not know; the error
// starts with the quoted mode, for the caller to prefix with its name.
func checkElectionMode(mode string) error {
	if mode != "service" && mode != "node" {
		return fmt.Errorf("%q: service or node", mode)
	}
	return nil
}

// deadMansSwitch is the shortest term a holder needs left to bind a VIP
// with a kernel lifetime that ends before anyone may take over: the agent's
// margin before the expiry (1s), the kernel's lapse slack, the dataplane's
// bind budget (200ms) and the shortest kernel lifetime (1s, its
// granularity).
const deadMansSwitch = time.Second + netif.LapseSlack + 200*time.Millisecond + time.Second

// minNodeLease is the shortest lease (to 100 ms, rounded up) node mode
// accepts with retry period retry: heartbeats go at least every
// min(lease/3, retry) (beatInterval), so lease − min(lease/3, retry) ≥
// deadMansSwitch holds from deadMansSwitch + retry when retry is the
// shorter, else from deadMansSwitch × 3/2 — whichever is less.
func minNodeLease(retry time.Duration) time.Duration {
	floor := min(deadMansSwitch+retry, deadMansSwitch*3/2)
	return (floor + 100*time.Millisecond - 1).Truncate(100 * time.Millisecond)
}

// beatInterval is node mode's heartbeat interval: LeaseDuration/3, or
// shorter where a bound VIP's kernel lifetime, counted from a heartbeat up
// to one interval old, would not cover deadMansSwitch (lease −
// deadMansSwitch), or where a failed heartbeat could not be tried again a
// retry period later before the renew deadline (renew − retry); but never
// shorter than min(lease/3, retry), the interval validate proves safe.
func beatInterval(lease, renew, retry time.Duration) time.Duration {
	return max(min(lease/3, lease-deadMansSwitch, renew-retry), min(lease/3, retry))
}

// runElector is what the manager runs and the agent consumes, in either
// mode.
type runElector interface {
	agent.Elector
	agent.Successors
	Run(context.Context) error
	HasSynced() bool
}

// seconds is a flag value that takes kube-vip's whole seconds ("5") or a Go
// duration ("700ms").
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	if *s.d%time.Second == 0 {
		return strconv.Itoa(int(*s.d / time.Second))
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil {
		*s.d = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither whole seconds nor a duration such as 700ms", v)
	}
	*s.d = d
	return nil
}

func (seconds) Type() string { return "duration" }

func secondsOrDuration(p *time.Duration, def time.Duration) func(*pflag.FlagSet, string, string) {
	return func(fs *pflag.FlagSet, n, u string) {
		*p = def
		fs.Var(seconds{p}, n, u)
	}
}

// electorConfig is the per-Service elector's configuration from the
// settings.
func (m *manager) electorConfig() election.Config {
	o := m.o
	return election.Config{
		Identity: o.nodeName, Instance: instanceID(),
		LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod,
		Namespace:      o.leaseInformerNamespace(),
		RankDelay:      rankDelay * time.Duration(btoi(o.election.spread)),
		SpreadRenewals: o.election.spread,
		Peers:          m.eligibleNodes,
		MaxAcquiring:   maxAcquiring * btoi(o.election.spread),
		MaxHeld:        maxHeld(o.retryPeriod) * btoi(o.election.spread),
		Full:           m.metrics.ElectionFull,
		// A Lease kube-vip held is taken once its addresses are silent.
		Silent: func(ctx context.Context, k election.Key) bool { return m.ag != nil && m.ag.Silent(ctx, k) },
	}
}

// maxHeld is how many Leases a node holds at most in per-Service mode:
// their renewals, one per retry period each, take four fifths of the Lease
// client's budget, leaving the rest for acquisitions and releases. Beyond
// it renewals would queue behind one another in the client, miss their
// deadlines and every hold would flap.
func maxHeld(retry time.Duration) int {
	return max(1, int(leaseQPS*retry.Seconds()*4/5))
}

// eligibleNodes are the nodes the per-Service elector ranks (the agent's
// Node cache; the agent is built after the elector, and asked only once
// it runs).
func (m *manager) eligibleNodes() []string {
	if m.ag == nil {
		return nil
	}
	return m.ag.EligibleNodes()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// heartbeatElector builds the node-heartbeat elector: node Leases in the
// lease namespace, so the informer spans it and the Service namespace.
func (m *manager) heartbeatElector(leaseClient *kubeclient.Clientset, cfg election.Config) (runElector, error) {
	o := m.o
	ns := ""
	if o.namespace != "" && o.namespace == o.leaseNamespace {
		ns = o.namespace
	}
	return heartbeat.New(heartbeat.Config{
		Identity: cfg.Identity, Instance: cfg.Instance,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Interval:      beatInterval(cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod),
		NodeNamespace: o.leaseNamespace, Namespace: ns,
		Keeper: cfg.Keeper, Kept: cfg.Kept, // LAN liveness: the same rules as per-Service mode
	}, leaseClient, func(k election.Key) { m.ag.LeaseChanged(k) }, m.log)
}

// rebalance is the agent's rebalancing: how often it may hand a Service
// over (0: off) and, in per-Service mode, the Lease that shows this node
// alive while it holds no Service (node mode has its heartbeat).
func (o *managerOptions) rebalance() (every time.Duration, presence election.Key) {
	if !o.election.rebalance {
		return 0, election.Key{}
	}
	if o.election.mode == "service" {
		ns := o.leaseInformerNamespace()
		if ns == "" {
			ns = o.leaseNamespace
		}
		presence = election.Key{Namespace: ns, Name: presencePrefix + o.nodeName}
	}
	return o.election.every, presence
}

// presencePrefix names the Lease each node holds in per-Service mode with
// rebalancing.
const presencePrefix = "vigil-presence-"
