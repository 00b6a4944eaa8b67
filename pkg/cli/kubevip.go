package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/nftables"

	"github.com/vigil-lb/vigil/pkg/agent"
	"github.com/vigil-lb/vigil/pkg/arpguard"
	"github.com/vigil-lb/vigil/pkg/dnsname"
	"github.com/vigil-lb/vigil/pkg/svcsec"
	"github.com/vigil-lb/vigil/pkg/vip"

	"github.com/spf13/pflag"
	rbacv1 "k8s.io/api/rbac/v1"
)

// kubevipOptions are the rest of kube-vip's services-mode settings (issue
// 10): each is honoured, honoured in a safe variant, or accepted and
// documented as what vigil always does.
type kubevipOptions struct {
	// skipDAD is accepted only: vigil binds every IPv6 VIP with
	// IFA_F_NODAD already (the Lease, not DAD, decides who holds it).
	skipDAD bool
	// healthPort serves /healthz alone on this TCP port (0: off).
	healthPort int
	// noServiceUpdates: never write Service status or annotations.
	noServiceUpdates bool
	// endpoints: read v1 Endpoints instead of EndpointSlices.
	endpoints bool
	// nodeLabels: label the announcing node per Service.
	nodeLabels bool
	// electionOnDemand: forcePerServiceElection Services get their own
	// Lease in shared-lease mode.
	electionOnDemand bool
	// preserve: keep a VIP on the node after losing it, silenced.
	preserve bool
	// security: drop traffic to VIPs on ports their Services do not expose.
	security bool
	// dnsMode, dnsServer, dnsRefresh: host names in loadbalancerIPs.
	dnsMode    string
	dnsServer  string
	dnsRefresh int
}

func kubevipSettings(o *kubevipOptions) []setting {
	return []setting{
		{"skip-dad", []string{"vip_skipdad"}, "accepted for kube-vip compatibility: vigil always binds IPv6 VIPs without duplicate address detection (IFA_F_NODAD)", boolean(&o.skipDAD, false)},
		{"health-check-port", []string{"health_check_port"}, "also serve /healthz alone on this TCP port (0: off)", integer(&o.healthPort, 0)},
		{"endpoints", []string{"enable_endpoints"}, "read v1 Endpoints instead of EndpointSlices (old clusters; the ClusterRole needs endpoints list/watch: vigil manifest --endpoints)", boolean(&o.endpoints, false)},
		{"node-labeling", []string{"enable_node_labeling"}, "label the node announcing a Service service-provided.kube-vip.io/<name>.<namespace>=<addresses> (the ClusterRole needs patch on nodes: vigil manifest --node-labeling)", boolean(&o.nodeLabels, false)},
		{"election-on-demand", []string{"per_service_election_on_demand"}, "with one shared Lease, Services annotated kube-vip.io/forcePerServiceElection=true get their own (kubevip-<name>)", boolean(&o.electionOnDemand, false)},
		{"preserve-on-leadership-loss", []string{"vip_preserve_on_leadership_loss"}, "keep an IPv4 VIP on the node after losing its Lease, but never answer ARP for it again (kube-vip's setting, made safe; IPv6 VIPs are removed)", boolean(&o.preserve, false)},
		{"service-security", []string{"enable_service_security"}, "drop traffic to a VIP this node announces unless it is ICMP or to a port of its Services (nftables table inet vigil_svcsec)", boolean(&o.security, false)},
		{"dns-mode", []string{"dns_mode"}, "which addresses of a host name in kube-vip.io/loadbalancerIPs are VIPs: first, ipv4, ipv6 or dual (the first of each family)", str(&o.dnsMode, "first")},
		{"dns-server", []string{"vigil_dns_server"}, "resolve Service host names with this DNS server, host:port (empty: the system resolver)", str(&o.dnsServer, "")},
		{"dns-refresh", []string{"vigil_dns_refresh"}, "resolve Service host names again every this many seconds; a changed record moves the VIP", integer(&o.dnsRefresh, 30)},
		{"disable-service-updates", []string{"disable_service_updates"}, "never write Service status or annotations (another controller owns them)", boolean(&o.noServiceUpdates, false)},
	}
}

// validate checks the settings' ranges; prometheus is prometheus_server.
func (o *kubevipOptions) validate(prometheus string) error {
	promPort := -1
	if prometheus != "" {
		p, err := listenPort(prometheus)
		if err != nil {
			return fmt.Errorf("prometheus_server=%q: %w", prometheus, err)
		}
		promPort = p
	}
	if _, err := dnsname.ParseMode(o.dnsMode); err != nil {
		return err
	}
	if o.dnsServer != "" {
		if _, err := listenPort(o.dnsServer); err != nil {
			return fmt.Errorf("vigil_dns_server=%q: %w", o.dnsServer, err)
		}
	}
	switch {
	case o.dnsRefresh <= 0:
		return fmt.Errorf("vigil_dns_refresh=%d: want a positive number of seconds", o.dnsRefresh)
	case o.healthPort < 0 || o.healthPort > 65535:
		return fmt.Errorf("health_check_port=%d: want a TCP port, 1-65535 (0: off)", o.healthPort)
	case o.healthPort != 0 && o.healthPort == promPort:
		return fmt.Errorf("health_check_port=%d: prometheus_server already listens on that port", o.healthPort)
	}
	return nil
}

// listenPort checks a listen address host:port (host may be empty) and
// returns its port, 1-65535.
func listenPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("want [host]:port: %w", err)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return 0, fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a TCP port (1-65535)", port)
	}
	return p, nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return h[0] != '-' && h[0] != '.'
}

// manifestKubevip are the `vigil manifest` flags for these settings that
// change the ClusterRole.
type manifestKubevip struct {
	endpoints  bool
	nodeLabels bool
}

func addKubevipManifestFlags(fs *pflag.FlagSet, o *manifestKubevip) {
	fs.BoolVar(&o.endpoints, "endpoints", false, "read v1 Endpoints instead of EndpointSlices (enable_endpoints; the ClusterRole gets endpoints list/watch)")
	fs.BoolVar(&o.nodeLabels, "node-labeling", false, "label the node announcing a Service (enable_node_labeling; the ClusterRole gets patch on nodes)")
}

// env is what the flags set in the container.
func (o manifestKubevip) env() []envVar {
	var vars []envVar
	if o.endpoints {
		vars = append(vars, envVar{flag: "endpoints", value: "true"})
	}
	if o.nodeLabels {
		vars = append(vars, envVar{flag: "node-labeling", value: "true"})
	}
	return vars
}

// rules are the ClusterRole rules the flags add, and no more.
func (o manifestKubevip) rules() []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	if o.endpoints {
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"endpoints"}, Verbs: []string{"list", "watch"}})
	}
	if o.nodeLabels {
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch"}})
	}
	return out
}

// silencer is the ARP guard that keeps preserved VIPs silent
// (vip_preserve_on_leadership_loss), with what a previous run left in it
// cleared; nil when the setting is off or nothing is bound on the LAN.
func (m *manager) silencer() (vip.Silencer, error) {
	if _, l2Off := m.o.routing(); !m.o.kv.preserve || l2Off {
		if m.o.kv.preserve {
			m.log.Warn("vip_preserve_on_leadership_loss ignored: VIPs are not bound on the LAN (vip_arp=false)")
		}
		return nil, nil
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	g := arpguard.New(conn)
	if err := g.Set(nil); err != nil {
		return nil, fmt.Errorf("clear the ARP guard: %w", err)
	}
	return g, nil
}

// firewall is the nftables guard of enable_service_security, with what a
// previous run left removed; nil when the setting is off.
func (m *manager) firewall() (agent.Firewall, error) {
	if !m.o.kv.security {
		return nil, nil
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	g := svcsec.New(conn)
	if err := g.Set(nil); err != nil {
		return nil, fmt.Errorf("clear table inet %s: %w", svcsec.TableName, err)
	}
	return g, nil
}

// hostNames makes the resolver of Service host names (dns_mode,
// vigil_dns_server, vigil_dns_refresh) and returns its lookup for the
// agent; it calls the agent back when a name's addresses change.
func (m *manager) hostNames() func(string) []netip.Addr {
	kv := &m.o.kv
	mode, _ := dnsname.ParseMode(kv.dnsMode) // validated at start
	res := &net.Resolver{}
	if kv.dnsServer != "" {
		res.PreferGo = true
		res.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, kv.dnsServer)
		}
	}
	m.dns = dnsname.New(dnsname.Config{
		Lookup: res.LookupNetIP, Mode: mode, Interval: time.Duration(kv.dnsRefresh) * time.Second,
		OnChange: func(name string) { m.ag.NameChanged(name) }, Log: m.log,
	})
	return func(name string) []netip.Addr {
		a, _ := m.dns.Addrs(name)
		return a
	}
}
