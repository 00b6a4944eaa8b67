package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/members"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// membersOptions are the LAN liveness settings (pkg/members).
type membersOptions struct {
	on   bool
	port int
	key  string
	// keyBytes is key decoded by resolve.
	keyBytes []byte
}

func membersSettings(o *membersOptions) []setting {
	return []setting{
		{"members", []string{"vigil_members"}, "LAN liveness among the agents: keep VIPs through an API server outage while every agent reports the API away (needs vigil_members_key)", boolean(&o.on, false)},
		{"members-port", []string{"vigil_members_port"}, "UDP port of the LAN liveness, the same on every node (MetalLB's memberlist uses 7946)", integer(&o.port, members.DefaultPort)},
		{"members-key", []string{"vigil_members_key"}, "shared key of the LAN liveness: base64 of 16, 24 or 32 random bytes, from a Secret", str(&o.key, "")},
	}
}

// resolve checks the settings and decodes the key. The key itself never
// appears in a message.
func (o *membersOptions) resolve() error {
	if o.port < 1 || o.port > 65535 {
		return fmt.Errorf("vigil_members_port=%d: want a port from 1 to 65535", o.port)
	}
	if !o.on {
		return nil
	}
	k, err := members.ParseKey(o.key)
	if err != nil {
		return fmt.Errorf("vigil_members_key: %w (vigil_members=true needs the shared key)", err)
	}
	o.keyBytes = k
	return nil
}

// Timings of the API prober and of the known-agent list.
const (
	probeEvery   = 250 * time.Millisecond
	probeTimeout = 750 * time.Millisecond
	// urgentTimeout bounds the probe made when the LAN view changed
	// (e.g. another agent reports the API back): a kept hold waits for it
	// before stepping down, and never past its since+T deadline.
	urgentTimeout = 300 * time.Millisecond
)

// lanMetrics takes the LAN liveness figures.
type lanMetrics interface {
	Members(apiReachable bool, seen, kept int, refused uint64)
}

// lanLiveness is one agent's LAN liveness and what feeds it: the API
// prober, the known agents read from the API, the record on its node
// Lease. mem is nil with members off: then it only records that.
type lanLiveness struct {
	mem       *members.Members
	o         membersOptions
	node      string
	namespace string
	leases    *kubeclient.Clientset // the Lease client (own QPS budget)
	client    *kubeclient.Clientset // Nodes
	watch     *agentWatch           // the known agents (members on)
	clock     clock.Clock
	log       *slog.Logger
	met       lanMetrics
	kept      func() int      // Leases held without the API
	held      func() []string // Services announced here, for the reports
	recorded  string          // the record last written
	// urgent asks the run loop to probe now, then call changed.
	urgent  chan struct{}
	changed func() // the elector's KeeperChanged
}

// newLAN builds the LAN liveness; with members on it binds the UDP port.
// changed is called when a kept hold may have to end at once, after a
// probe of the API server (this agent may have it back too).
func newLAN(o membersOptions, node, namespace string, leases, client *kubeclient.Clientset, log *slog.Logger, changed func()) (*lanLiveness, error) {
	l := &lanLiveness{o: o, node: node, namespace: namespace, leases: leases, client: client, clock: clock.Real{}, log: log,
		urgent: make(chan struct{}, 1), changed: changed}
	if !o.on {
		return l, nil
	}
	var err error
	if l.watch, err = newAgentWatch(leases, client, namespace); err != nil {
		return nil, fmt.Errorf("agent watch: %w", err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: o.port})
	if err != nil {
		return nil, fmt.Errorf("vigil_members_port=%d: %w", o.port, err)
	}
	l.mem, err = members.New(members.Config{Node: node, Instance: instanceID(), Key: o.keyBytes,
		Port: uint16(o.port), Clock: l.clock, OnChange: l.probeNow}, conn, log)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return l, nil
}

// keeper is the elector's view (nil with members off).
func (l *lanLiveness) keeper() election.Keeper {
	if l == nil || l.mem == nil {
		return nil
	}
	return l.mem
}

// run records this agent on its node Lease, then (members on) runs the
// heartbeat and probes the API server until ctx ends.
func (l *lanLiveness) run(ctx context.Context) {
	if l.mem == nil {
		l.recordUntilWritten(ctx)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); logErr(l.log, "members", l.mem.Run(ctx)) }()
	defer wg.Wait()
	pw := l.watch
	pw.start(ctx)
	defer pw.stop()
	t := l.clock.NewTimer()
	defer t.Stop()
	recorded := false
	for {
		reachable := l.probe(ctx, probeTimeout)
		l.mem.SetReachable(reachable)
		if reachable {
			recorded = l.record(ctx) || recorded
		}
		// Only once recorded: of two agents starting at once, the later
		// reader sees the earlier writer and sends to it, so each hears
		// the other.
		if recorded {
			l.sharePeers(pw)
		}
		l.report(reachable)
		t.Reset(l.clock.Now().Add(probeEvery))
		if !l.wait(ctx, t) {
			return
		}
	}
}

// wait waits for t, handling urgent probes meanwhile; false when ctx
// ended.
func (l *lanLiveness) wait(ctx context.Context, t clock.Timer) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
			return true
		case <-l.urgent:
			// Another agent has the API back, or a new one spoke: if this
			// agent has it back too, say so before the elector decides.
			if l.probe(ctx, urgentTimeout) {
				l.mem.SetReachable(true)
			}
			l.changed()
		}
	}
}

// probeNow asks the run loop for an urgent probe (never blocks).
func (l *lanLiveness) probeNow() {
	select {
	case l.urgent <- struct{}{}:
	default:
	}
}

// probe is one quorum read of this node's Lease: an answer (even "not
// found") means the API server and its storage work.
func (l *lanLiveness) probe(ctx context.Context, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := l.leases.Leases(l.namespace).Get(ctx, nodestatus.LeaseName(l.node), metav1.GetOptions{})
	return err == nil || apierrors.IsNotFound(err)
}

// recordUntilWritten writes the members-off record, retrying every
// probe period until it is written or ctx ends.
func (l *lanLiveness) recordUntilWritten(ctx context.Context) {
	t := l.clock.NewTimer()
	defer t.Stop()
	for !l.record(ctx) {
		t.Reset(l.clock.Now().Add(probeEvery))
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// record writes this agent's members record on its node Lease if it
// changed; it reports whether the Lease holds it.
func (l *lanLiveness) record(ctx context.Context) bool {
	v, err := nodestatus.EncodeMembers(l.self())
	if err != nil {
		l.log.Warn("members record not written", "err", err)
		return false
	}
	if v == l.recorded {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := nodestatus.Annotate(ctx, l.leases, l.namespace, l.node, nodestatus.MembersAnnotation, v); err != nil {
		l.log.Warn("members record not written", "err", err)
		return false
	}
	l.recorded = v
	return true
}

// self is this agent's members record.
func (l *lanLiveness) self() nodestatus.Members {
	if l.mem == nil {
		return nodestatus.Members{}
	}
	_, _, reachable := l.mem.Epoch()
	r := nodestatus.Members{On: true, Key: l.mem.Fingerprint(), Port: l.o.port, API: reachable}
	for _, v := range l.mem.Views() {
		if v.Heard {
			r.Seen = append(r.Seen, nodestatus.SeenMember{Node: v.Node, API: v.Reachable})
		}
	}
	return r
}

// sharePeers hands the members the agents known from the API (the
// watched caches: as they were before an outage, during it).
func (l *lanLiveness) sharePeers(pw *agentWatch) {
	peers, ok := pw.peers()
	if !ok {
		return
	}
	l.mem.SetPeers(peers)
}

// knownPeers joins the agents' records with their Node addresses. An
// agent without a readable record counts as running without members.
func knownPeers(records map[string]nodestatus.MembersRecord, nodes []corev1.Node) []members.Peer {
	addrs := map[string]netip.Addr{}
	for _, n := range nodes {
		addrs[n.Name] = nodeAddr(n)
	}
	var out []members.Peer
	for name, r := range records {
		out = append(out, members.Peer{Node: name, Addr: addrs[name], Members: r.OK && r.On, Fingerprint: r.Key})
	}
	return out
}

// nodeAddr is a Node's InternalIP (else its ExternalIP; invalid: none).
func nodeAddr(n corev1.Node) netip.Addr {
	var ext netip.Addr
	for _, a := range n.Status.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		switch a.Type {
		case corev1.NodeInternalIP:
			return ip.Unmap()
		case corev1.NodeExternalIP:
			ext = ip.Unmap()
		}
	}
	return ext
}

// report hands this agent's Services to its LAN reports and the figures
// to the metrics.
func (l *lanLiveness) report(reachable bool) {
	if l.held != nil {
		l.mem.SetHeld(l.held())
	}
	if l.met == nil {
		return
	}
	seen := 0
	for _, v := range l.mem.Views() {
		if v.Age >= 0 && v.Age < l.mem.Fresh() {
			seen++
		}
	}
	kept := 0
	if l.kept != nil {
		kept = l.kept()
	}
	l.met.Members(reachable, seen, kept, l.mem.Rejected())
}

// lanLiveness builds the LAN liveness of the agent (before the elector,
// which consults it).
func (m *manager) lanLiveness(client, leaseClient *kubeclient.Clientset) error {
	changed := func() {
		if k, ok := m.el.(keeping); ok {
			k.KeeperChanged()
		}
	}
	lan, err := newLAN(m.o.members, m.o.nodeName, m.o.leaseNamespace, leaseClient, client, m.log, changed)
	if err != nil {
		return err
	}
	lan.met = m.metrics
	lan.held = func() []string {
		if m.ag == nil {
			return nil
		}
		return m.ag.Announced()
	}
	lan.kept = func() int {
		if k, ok := m.el.(keeping); ok {
			return k.KeptCount()
		}
		return 0
	}
	m.lan = lan
	return nil
}

// keeping is an elector that keeps Leases through an API outage (both
// election modes).
type keeping interface {
	KeeperChanged()
	KeptCount() int
}

// keptWithoutAPI puts the Events on the Services of a Lease kept without
// the API, once it is renewed.
func (m *manager) keptWithoutAPI(k election.Key, d time.Duration) {
	if m.ag != nil {
		m.ag.KeptWithoutAPI(k, d)
	}
}

// The Secret the manifests read the members key from; the user creates
// it (docs/configuration.md), the repository never holds a key.
const (
	membersSecret    = "vigil-members"
	membersSecretKey = "key"
)

// membersEnv is the manifests' environment for --members.
func (o *manifestOptions) membersEnv() []envVar {
	if !o.members {
		return nil
	}
	return []envVar{
		{flag: "members", value: "true"},
		{flag: "members-key", secret: membersSecret + "/" + membersSecretKey},
	}
}
