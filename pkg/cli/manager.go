package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/agent"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/dhcp"
	"github.com/vigil-lb/vigil/pkg/dnsname"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/metallb"
	"github.com/vigil-lb/vigil/pkg/metrics"
	"github.com/vigil-lb/vigil/pkg/peering"
	"github.com/vigil-lb/vigil/pkg/routed"
	"github.com/vigil-lb/vigil/pkg/upnp"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// managerOptions is what `vigil manager` reads from flags and environment.
type managerOptions struct {
	// newSpeaker builds the BGP speaker (nil: this binary links none).
	newSpeaker      NewSpeaker
	services        bool
	perService      bool
	namespace       string
	leaseName       string
	leaseNamespace  string
	iface           string
	servicesIface   string
	nodeName        string
	leaseDuration   time.Duration
	renewDeadline   time.Duration
	retryPeriod     time.Duration
	arp             bool
	arpRate         int
	subnet          string
	class           kube.ClassPolicy
	ignoreExcludeLB bool
	kubeconfig      string
	prometheus      string
	upnp            bool
	dhcpMode        kube.DHCPMode
	stateFile       string
	logLevel        string
	allocator       bool
	alloc           allocatorOptions
	bgp             bgpOptions
	bgpCfg          bgpConfig // resolved from bgp
	metallb         metallbOptions
	election        electionOptions
	kv              kubevipOptions
	members         membersOptions
}

func managerSettings(o *managerOptions) []setting {
	table := []setting{
		{"services", []string{"svc_enable"}, "run services mode (the only mode vigil has)", boolean(&o.services, true)},
		{"service-election", []string{"svc_election"}, "one Lease per Service (kubevip-<name>) instead of one for all", boolean(&o.perService, false)},
		{"service-namespace", []string{"svc_namespace"}, "watch Services in this namespace only (empty: all)", str(&o.namespace, "")},
		{"lease-name", []string{"svc_leasename"}, "the shared Lease when per-service election is off", str(&o.leaseName, "plndr-svcs-lock")},
		{"lease-namespace", []string{"vip_leasenamespace", "POD_NAMESPACE"}, "namespace of the shared Lease", str(&o.leaseNamespace, "kube-system")},
		{"interface", []string{"vip_interface"}, "interface to bind VIPs on (empty or auto: the one whose subnet holds the VIP)", str(&o.iface, "")},
		{"services-interface", []string{"vip_servicesinterface"}, "interface for Service VIPs, overrides --interface (auto: by subnet)", str(&o.servicesIface, "")},
		{"node-name", []string{"vip_nodename", "NODE_NAME"}, "this node's name: the Lease holder identity", str(&o.nodeName, hostname())},
		{"lease-duration", []string{"vip_leaseduration"}, "Lease duration: whole seconds (kube-vip) or a duration such as 700ms", secondsOrDuration(&o.leaseDuration, 5*time.Second)},
		{"renew-deadline", []string{"vip_renewdeadline"}, "a holder stops announcing this long after its last accepted renewal: seconds or a duration", secondsOrDuration(&o.renewDeadline, 3*time.Second)},
		{"retry-period", []string{"vip_retryperiod"}, "renew interval (node mode: heartbeats every lease duration/3 where the kernel-lifetime limit allows; this is the retry after a failed one): seconds or a duration", secondsOrDuration(&o.retryPeriod, time.Second)},
		{"arp", []string{"vip_arp"}, "announce VIPs with gratuitous ARP / unsolicited NDP", boolean(&o.arp, true)},
		{"arp-rate", []string{"vip_arpRate"}, "re-announce interval, milliseconds", integer(&o.arpRate, 3000)},
		{"vip-subnet", []string{"vip_subnet"}, "prefix length of bound VIPs: 32 (IPv4) and 128 (IPv6) are what vigil binds", str(&o.subnet, "")},
		{"ignore-exclude-lb", []string{"vigil_ignore_exclude_lb"}, "announce from this node even if its Node is labelled node.kubernetes.io/exclude-from-external-load-balancers or NetworkUnavailable", boolean(&o.ignoreExcludeLB, false)},
		{"kubeconfig", []string{"k8s_config_file", "KUBECONFIG"}, "kubeconfig path (empty: in-cluster config)", str(&o.kubeconfig, "")},
		{"prometheus-server", []string{"prometheus_server"}, "address for /metrics and /healthz (empty: off)", str(&o.prometheus, ":2112")},
		{"upnp", []string{"enableUPNP", "enable_upnp"}, "UPnP port forwards on the gateway for Services annotated kube-vip.io/forwardUPNP=true", boolean(&o.upnp, false)},
		{"dhcp-mode", []string{"dhcp_mode"}, "DHCP families for Services asking for 0.0.0.0: ipv4, ipv6 (DHCPv6) or dual (both); :: always asks DHCPv6", parsed(&o.dhcpMode, kube.DHCPModeIPv4, kube.ParseDHCPMode)},
		{"state-file", []string{"vigil_state_file"}, "journal of bound VIPs, to clean up after a crash", str(&o.stateFile, "/run/vigil/vips.json")},
		{"log-level", []string{"vigil_log_level"}, "debug, info, warn or error", str(&o.logLevel, "info")},
		{"allocator", []string{"svc_allocator"}, "also run the address allocator (one leader among all agents)", boolean(&o.allocator, false)},
	}
	table = append(table, classSettings(&o.class)...)
	table = append(table, bgpSettings(&o.bgp)...)
	table = append(table, metallbSettings(&o.metallb)...)
	table = append(table, electionSettings(&o.election)...)
	table = append(table, kubevipSettings(&o.kv)...)
	table = append(table, membersSettings(&o.members)...)
	return append(table, allocatorSettings(&o.alloc)...)
}

func newManagerCommand(p program) *cobra.Command {
	o := &managerOptions{newSpeaker: p.newSpeaker}
	table := managerSettings(o)
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the node agent (kube-vip services mode)",
		Long: "Run the node agent. Every setting is a flag and also one of kube-vip's environment variables:\n  " +
			strings.Join(envNames(table), " ") +
			"\nService annotations it reads (docs/configuration.md says how each is honoured):\n  " +
			strings.Join(kube.KubevipAnnotations(), " "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), table, os.LookupEnv); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			cfg, err := o.bgp.resolve(interfaceAddrs)
			if err != nil {
				return err
			}
			o.bgpCfg = cfg
			if o.bgp.enable && o.newSpeaker == nil {
				return execWithBGP(p.args)
			}
			if o.allocator {
				o.alloc.class, o.alloc.metallb = o.class, o.metallb
				if err := o.alloc.resolve(os.Getenv, os.ReadFile); err != nil {
					return err
				}
			}
			return runManager(cmd.Context(), o)
		},
	}
	register(cmd.Flags(), table)
	return cmd
}

func (o *managerOptions) validate() error {
	switch {
	case !o.services:
		return errors.New("svc_enable=false: vigil implements only kube-vip's services mode")
	case o.nodeName == "":
		return errors.New("no node name: set vip_nodename (or --node-name)")
	case o.leaseDuration <= 0 || o.renewDeadline <= 0 || o.retryPeriod <= 0:
		return errors.New("vip_leaseduration, vip_renewdeadline and vip_retryperiod must be positive")
	case o.renewDeadline >= o.leaseDuration:
		return fmt.Errorf("vip_renewdeadline (%v) must be shorter than vip_leaseduration (%v): a holder must stop before others may take over", o.renewDeadline, o.leaseDuration)
	case o.retryPeriod >= o.renewDeadline:
		return fmt.Errorf("vip_retryperiod (%v) must be shorter than vip_renewdeadline (%v)", o.retryPeriod, o.renewDeadline)
	case o.arpRate <= 0:
		return fmt.Errorf("vip_arpRate must be positive, got %d", o.arpRate)
	}
	if err := o.election.validate(o.perService, o.leaseDuration, o.renewDeadline, o.retryPeriod); err != nil {
		return err
	}
	for _, s := range strings.Split(o.subnet, ",") {
		if s = strings.TrimSpace(s); s != "" && s != "32" && s != "128" {
			return fmt.Errorf("vip_subnet=%q: vigil binds VIPs as /32 (IPv4) and /128 (IPv6) only", o.subnet)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("vigil_log_level=%q: %w", o.logLevel, err)
	}
	if err := o.kv.validate(o.prometheus); err != nil {
		return err
	}
	return o.members.resolve()
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// manager is one agent process: what runManager builds and runs.
type manager struct {
	o       *managerOptions
	log     *slog.Logger
	cfg     *rest.Config
	metrics *metrics.Metrics
	dp      *vip.Manager
	el      runElector
	pm      *upnp.Manager
	speaker Speaker
	routed  *routed.Dataplane
	crds    *crdconfig.Source
	// sessions: every node's published BGP sessions, for BGPPeer status.
	sessions *nodeSessions
	// conflicts: BGP advertisement conflicts already logged.
	conflicts sync.Map
	mlb       *metallb.Source // MetalLB's configuration (nil: vigil_metallb=false)
	// bgpOffSaid: MetalLB's BGP configuration unserved without bgp_enable
	// was logged.
	bgpOffSaid atomic.Bool
	// sessionsUp is the number of established BGP sessions, as the peer
	// watch last read it.
	sessionsUp atomic.Int32
	peers      *peering.Controller
	ag         *agent.Agent
	recorder   record.EventRecorder
	dns        *dnsname.Resolver // Service host names
	lan        *lanLiveness
}

func runManager(ctx context.Context, o *managerOptions) error {
	m, stop, err := newManager(ctx, o)
	if err != nil {
		return err
	}
	defer waitAtMost(clock.Real{}, shutdownBudget, m.log, "Event delivery", stop)
	return m.run(ctx)
}

// newManager builds every part of the agent process; stop ends what it
// started (the event broadcaster).
func newManager(ctx context.Context, o *managerOptions) (*manager, func(), error) {
	m := &manager{o: o, log: newLogger(o.logLevel).With("node", o.nodeName), metrics: metrics.New()}
	var err error
	if m.cfg, err = restConfig(o.kubeconfig); err != nil {
		return nil, nil, fmt.Errorf("kubernetes config: %w", err)
	}
	m.cfg.Wrap(m.metrics.LeaseWrites) // vigil_lease_writes_total: the agent's and the allocator's
	client, leaseClient, _, err := apiClients(m.cfg, "vigil/"+Version, 20, 40)
	if err != nil {
		return nil, nil, err
	}
	recorder, stopEvents := eventRecorder(ctx, client, "vigil", o.nodeName)
	m.recorder = recorder
	if err := m.dataplane(); err != nil {
		stopEvents()
		return nil, nil, err
	}
	if err := m.router(client); err != nil {
		stopEvents()
		return nil, nil, err
	}
	if err := m.metallbAgent(client); err != nil {
		stopEvents()
		return nil, nil, err
	}
	if err := m.lanLiveness(client, leaseClient); err != nil {
		stopEvents()
		return nil, nil, err
	}
	if err := m.elector(leaseClient); err != nil {
		stopEvents()
		return nil, nil, err
	}
	if err := m.agent(client); err != nil {
		stopEvents()
		return nil, nil, err
	}
	m.peering(client)
	return m, stopEvents, nil
}

func newLogger(level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // validated at start-up
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// dataplane builds the VIP manager and removes what a previous run left.
func (m *manager) dataplane() error {
	o := m.o
	iface := o.servicesIface
	if iface == "" {
		iface = o.iface
	}
	annOpts := announce.Options{Refresh: time.Duration(o.arpRate) * time.Millisecond, OnSent: m.metrics.Sent}
	if !o.arp {
		annOpts.Burst, annOpts.Refresh = -1, 24*time.Hour
	}
	sil, err := m.silencer()
	if err != nil {
		return err
	}
	m.dp = vip.New(vip.Config{
		Interface: iface, Journal: o.stateFile, Announce: annOpts, Silencer: sil,
		NewDHCP:      newDHCPClient(m.log),
		OnDHCPChange: func(key string) { m.ag.Enqueue(key) },
	}, m.log)
	removed, err := m.dp.Recover()
	if err != nil {
		return fmt.Errorf("remove VIPs left by a previous run: %w", err)
	}
	if len(removed) > 0 {
		m.log.Info("removed stale VIPs", "vips", removed)
	}
	return nil
}

func (m *manager) elector(leaseClient *kubeclient.Clientset) error {
	cfg := m.electorConfig()
	cfg.Keeper, cfg.Kept = m.lan.keeper(), m.keptWithoutAPI
	if m.o.election.mode == "node" {
		el, err := m.heartbeatElector(leaseClient, cfg)
		m.el = el
		return err
	}
	el, err := election.New(cfg, leaseClient, func(k election.Key) { m.ag.LeaseChanged(k) }, m.log)
	m.el = el
	return err
}

// leaseInformerNamespace is where the elector watches Leases: the Service
// namespace when every Lease lives there (per-Service Leases, or a shared
// Lease in that same namespace), else every namespace (label-filtered).
func (o *managerOptions) leaseInformerNamespace() string {
	if o.namespace != "" && (o.perService || o.namespace == o.leaseNamespace) {
		return o.namespace
	}
	return ""
}

func (m *manager) agent(client *kubeclient.Clientset) error {
	o := m.o
	deps := agent.Deps{Client: client, Elector: m.el, Dataplane: m.dp, Metrics: m.metrics, Recorder: m.recorder, Janitor: election.Janitor{Client: client}}
	fw, err := m.firewall()
	if err != nil {
		return err
	}
	deps.Firewall, deps.Names = fw, m.hostNames()
	if o.upnp {
		m.pm = upnp.NewManager(upnp.Config{OnChange: func(key string) { m.ag.Enqueue(key) }, Log: m.log})
		deps.PortMapper = m.pm
	}
	if m.routed != nil {
		deps.Router = m.routed
	}
	deps.Policy = m.adverts()
	every, presence := o.rebalance()
	if every > 0 {
		deps.Successors = m.el
	}
	routing, l2Off := o.routing()
	ag, err := agent.New(agent.Config{
		NodeName: o.nodeName, Namespace: o.namespace,
		PerService: o.perService, LeaseName: o.leaseName, LeaseNamespace: o.leaseNamespace,
		Class: o.class, IgnoreNodeExclusion: o.ignoreExcludeLB,
		Routing: routing, L2Off: l2Off, NoServiceUpdates: o.kv.noServiceUpdates, Endpoints: o.kv.endpoints,
		NodeLabels: o.kv.nodeLabels, ElectionOnDemand: o.kv.electionOnDemand,
		Preserve: o.kv.preserve, DHCPMode: o.dhcpMode,
		Rebalance: every, Presence: presence,
	}, deps, m.log)
	m.ag = ag
	return err
}

// run runs the agent until ctx ends. The elector, the dataplane and the
// port mapper outlive the agent: on shutdown it withdraws its VIPs and
// then releases its Leases through them.
func (m *manager) run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopBG(); waitAtMost(clock.Real{}, shutdownBudget, m.log, "background work", wg.Wait) }()
	for _, run := range m.background(ctx) {
		wg.Add(1)
		go func() { defer wg.Done(); run(bg) }()
	}
	if !cache.WaitForCacheSync(ctx.Done(), m.el.HasSynced) {
		return nil
	}
	return m.ag.Run(ctx)
}

// background lists the long-running parts besides the agent, each run
// until its context ends. The allocator stops with the process's ctx.
func (m *manager) background(ctx context.Context) []func(context.Context) {
	runs := []func(context.Context){
		func(bg context.Context) { logErr(m.log, "dataplane", m.dp.Run(bg)) },
		func(bg context.Context) { logErr(m.log, "election", m.el.Run(bg)) },
		func(bg context.Context) { logErr(m.log, "DNS resolver", m.dns.Run(bg)) },
		m.lan.run,
	}
	if m.speaker != nil {
		runs = append(runs,
			func(bg context.Context) { logErr(m.log, "BGP speaker", m.speaker.Run(bg)) },
			func(bg context.Context) { m.crds.Run(bg) },
			func(bg context.Context) { m.sessions.Run(bg) },
			func(bg context.Context) { logErr(m.log, "BGP peering", m.peers.Run(bg)) },
			m.publishPeers,
		)
	}
	if m.mlb != nil {
		runs = append(runs, m.mlb.Run)
	}
	if m.pm != nil {
		runs = append(runs, func(bg context.Context) { logErr(m.log, "UPnP", m.pm.Run(bg)) })
	}
	if m.o.prometheus != "" {
		runs = append(runs, func(bg context.Context) {
			logErr(m.log, "metrics server", m.metrics.Serve(bg, m.o.prometheus, m.healthy))
		})
	}
	if p := m.o.kv.healthPort; p != 0 {
		runs = append(runs, func(bg context.Context) {
			logErr(m.log, "health server", m.metrics.ServeHealth(bg, fmt.Sprintf(":%d", p), m.healthy))
		})
	}
	if m.o.allocator {
		runs = append(runs, func(context.Context) {
			logErr(m.log, "allocator", runAllocator(ctx, &m.o.alloc, m.cfg, m.metrics, m.log))
		})
	}
	return runs
}

// healthy: the Lease and agent caches are filled (/healthz).
func (m *manager) healthy() bool { return m.el.HasSynced() && m.ag.HasSynced() }

func logErr(log *slog.Logger, what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error(what+" stopped", "err", err)
	}
}

// dhcpLease adapts pkg/dhcp's client to the dataplane's DHCPClient.
type dhcpLease struct{ *dhcp.Client }

func (c dhcpLease) Addr() (netip.Addr, bool) {
	l, ok := c.Lease()
	return l.Addr, ok
}

func newDHCPClient(log *slog.Logger) vip.NewDHCPClient {
	return func(cfg vip.DHCPClientConfig) (vip.DHCPClient, error) {
		open := dhcp.New
		if cfg.IPv6 {
			open = dhcp.New6
		}
		c, err := open(dhcp.Config{
			Interface: cfg.Interface, Hostname: cfg.Hostname, RequestedIP: cfg.Requested,
			Broadcast: cfg.Broadcast, OnChange: cfg.OnChange, Log: log,
		})
		if err != nil {
			return nil, err
		}
		return dhcpLease{c}, nil
	}
}
