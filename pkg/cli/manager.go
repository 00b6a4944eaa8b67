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
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-lb/vigil/pkg/agent"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/dhcp"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/metrics"
	"github.com/vigil-lb/vigil/pkg/upnp"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// managerOptions is what `vigil manager` reads from flags and environment.
type managerOptions struct {
	services       bool
	perService     bool
	namespace      string
	leaseName      string
	leaseNamespace string
	iface          string
	servicesIface  string
	nodeName       string
	leaseDuration  int
	renewDeadline  int
	retryPeriod    int
	arp            bool
	arpRate        int
	subnet         string
	classOnly      bool
	className      string
	classLegacy    bool
	kubeconfig     string
	prometheus     string
	upnp           bool
	dhcpMode       string
	stateFile      string
	logLevel       string
	allocator      bool
	alloc          allocatorOptions
}

func managerSettings(o *managerOptions) []setting {
	return append([]setting{
		{"services", []string{"svc_enable"}, "run services mode (the only mode vigil has)", boolean(&o.services, true)},
		{"service-election", []string{"svc_election"}, "one Lease per Service (kubevip-<name>) instead of one for all", boolean(&o.perService, false)},
		{"service-namespace", []string{"svc_namespace"}, "watch Services in this namespace only (empty: all)", str(&o.namespace, "")},
		{"lease-name", []string{"svc_leasename"}, "the shared Lease when per-service election is off", str(&o.leaseName, "plndr-svcs-lock")},
		{"lease-namespace", []string{"vip_leasenamespace", "POD_NAMESPACE"}, "namespace of the shared Lease", str(&o.leaseNamespace, "kube-system")},
		{"interface", []string{"vip_interface"}, "interface to bind VIPs on (empty or auto: the one whose subnet holds the VIP)", str(&o.iface, "")},
		{"services-interface", []string{"vip_servicesinterface"}, "interface for Service VIPs, overrides --interface (auto: by subnet)", str(&o.servicesIface, "")},
		{"node-name", []string{"vip_nodename", "NODE_NAME"}, "this node's name: the Lease holder identity", str(&o.nodeName, hostname())},
		{"lease-duration", []string{"vip_leaseduration"}, "Lease duration, seconds", integer(&o.leaseDuration, 5)},
		{"renew-deadline", []string{"vip_renewdeadline"}, "a holder stops announcing this long after its last accepted renewal, seconds", integer(&o.renewDeadline, 3)},
		{"retry-period", []string{"vip_retryperiod"}, "renew interval, seconds", integer(&o.retryPeriod, 1)},
		{"arp", []string{"vip_arp"}, "announce VIPs with gratuitous ARP / unsolicited NDP", boolean(&o.arp, true)},
		{"arp-rate", []string{"vip_arpRate"}, "re-announce interval, milliseconds", integer(&o.arpRate, 3000)},
		{"vip-subnet", []string{"vip_subnet"}, "prefix length of bound VIPs: 32 (IPv4) and 128 (IPv6) are what vigil binds", str(&o.subnet, "")},
		{"lb-class-only", []string{"lb_class_only"}, "handle only Services whose loadBalancerClass is --lb-class-name", boolean(&o.classOnly, false)},
		{"lb-class-name", []string{"lb_class_name"}, "the load balancer class vigil answers to", str(&o.className, kube.DefaultClass)},
		{"lb-class-legacy-handling", []string{"lb_class_legacy_handling"}, "also handle Services with no loadBalancerClass", boolean(&o.classLegacy, true)},
		{"kubeconfig", []string{"k8s_config_file", "KUBECONFIG"}, "kubeconfig path (empty: in-cluster config)", str(&o.kubeconfig, "")},
		{"prometheus-server", []string{"prometheus_server"}, "address for /metrics and /healthz (empty: off)", str(&o.prometheus, ":2112")},
		{"upnp", []string{"enableUPNP", "enable_upnp"}, "UPnP port forwards on the gateway for Services annotated kube-vip.io/forwardUPNP=true", boolean(&o.upnp, false)},
		{"dhcp-mode", []string{"dhcp_mode"}, "DHCP family for Services asking for 0.0.0.0: ipv4 (the only one; empty means ipv4)", str(&o.dhcpMode, "")},
		{"state-file", []string{"vigil_state_file"}, "journal of bound VIPs, to clean up after a crash", str(&o.stateFile, "/run/vigil/vips.json")},
		{"log-level", []string{"vigil_log_level"}, "debug, info, warn or error", str(&o.logLevel, "info")},
		{"allocator", []string{"svc_allocator"}, "also run the address allocator (one leader among all agents)", boolean(&o.allocator, false)},
	}, allocatorSettings(&o.alloc)...)
}

func newManagerCommand() *cobra.Command {
	o := &managerOptions{}
	table := managerSettings(o)
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the node agent (kube-vip services mode)",
		Long: "Run the node agent. Every setting is a flag and also one of kube-vip's environment variables:\n  " +
			strings.Join(envNames(table), " "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), table, os.LookupEnv); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			if o.allocator {
				o.alloc.className = o.className
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
		return fmt.Errorf("vip_renewdeadline (%d) must be shorter than vip_leaseduration (%d): a holder must stop before others may take over", o.renewDeadline, o.leaseDuration)
	case o.retryPeriod >= o.renewDeadline:
		return fmt.Errorf("vip_retryperiod (%d) must be shorter than vip_renewdeadline (%d)", o.retryPeriod, o.renewDeadline)
	case o.arpRate <= 0:
		return fmt.Errorf("vip_arpRate must be positive, got %d", o.arpRate)
	case o.dhcpMode != "" && o.dhcpMode != "ipv4":
		return fmt.Errorf("dhcp_mode=%q: vigil gets IPv4 addresses from DHCP only (ipv4)", o.dhcpMode)
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
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func runManager(ctx context.Context, o *managerOptions) error {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.logLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("node", o.nodeName)

	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	client, leaseClient, _, err := apiClients(cfg, "vigil/"+Version, 20, 40)
	if err != nil {
		return err
	}

	m := metrics.New()
	iface := o.servicesIface
	if iface == "" {
		iface = o.iface
	}
	annOpts := announce.Options{Refresh: time.Duration(o.arpRate) * time.Millisecond, OnSent: m.Sent}
	if !o.arp {
		annOpts.Burst, annOpts.Refresh = -1, 24*time.Hour
	}
	var ag *agent.Agent
	dp := vip.New(vip.Config{
		Interface: iface, Journal: o.stateFile, Announce: annOpts,
		NewDHCP:      newDHCPClient(log),
		OnDHCPChange: func(key string) { ag.Enqueue(key) },
	}, log)
	if removed, err := dp.Recover(); err != nil {
		return fmt.Errorf("remove VIPs left by a previous run: %w", err)
	} else if len(removed) > 0 {
		log.Info("removed stale VIPs", "vips", removed)
	}

	recorder, stopEvents := eventRecorder(ctx, client, "vigil", o.nodeName)
	defer stopEvents()

	el, err := election.New(election.Config{
		Identity: o.nodeName, Instance: instanceID(),
		LeaseDuration: time.Duration(o.leaseDuration) * time.Second,
		RenewDeadline: time.Duration(o.renewDeadline) * time.Second,
		RetryPeriod:   time.Duration(o.retryPeriod) * time.Second,
		Namespace:     o.namespace,
	}, leaseClient, func(k election.Key) { ag.LeaseChanged(k) }, log)
	if err != nil {
		return err
	}
	deps := agent.Deps{Client: client, Elector: el, Dataplane: dp, Metrics: m, Recorder: recorder}
	var pm *upnp.Manager
	if o.upnp {
		pm = upnp.NewManager(upnp.Config{OnChange: func(key string) { ag.Enqueue(key) }, Log: log})
		deps.PortMapper = pm
	}
	ag, err = agent.New(agent.Config{
		NodeName: o.nodeName, Namespace: o.namespace,
		PerService: o.perService, LeaseName: o.leaseName, LeaseNamespace: o.leaseNamespace,
		Class: kube.ClassFilter{Name: o.className, Legacy: o.classLegacy, Only: o.classOnly},
	}, deps, log)
	if err != nil {
		return err
	}

	// The elector and the dataplane outlive the agent: on shutdown the agent
	// withdraws its VIPs and then releases its leases through them.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	wg.Add(2)
	go func() { defer wg.Done(); _ = dp.Run(bg) }()
	go func() {
		defer wg.Done()
		if err := el.Run(bg); err != nil {
			log.Error("election stopped", "err", err)
		}
	}()
	if pm != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pm.Run(bg); err != nil {
				log.Warn("UPnP", "err", err)
			}
		}()
	}
	if o.prometheus != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Serve(bg, o.prometheus, func() bool { return el.HasSynced() && ag.HasSynced() }); err != nil {
				log.Error("metrics server", "addr", o.prometheus, "err", err)
			}
		}()
	}
	if o.allocator {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runAllocator(ctx, &o.alloc, cfg, log); err != nil {
				log.Error("allocator stopped", "err", err)
			}
		}()
	}
	<-dp.Ready()
	if !cache.WaitForCacheSync(ctx.Done(), el.HasSynced) {
		return nil
	}
	return ag.Run(ctx)
}

// dhcpLease adapts pkg/dhcp's client to the dataplane's DHCPClient.
type dhcpLease struct{ *dhcp.Client }

func (c dhcpLease) Addr() (netip.Addr, bool) {
	l, ok := c.Lease()
	return l.Addr, ok
}

func newDHCPClient(log *slog.Logger) vip.NewDHCPClient {
	return func(iface, hostname string, requested netip.Addr, onChange func()) (vip.DHCPClient, error) {
		c, err := dhcp.New(dhcp.Config{Interface: iface, Hostname: hostname, RequestedIP: requested, OnChange: onChange, Log: log})
		if err != nil {
			return nil, err
		}
		return dhcpLease{c}, nil
	}
}
