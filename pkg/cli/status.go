package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-lb/vigil/pkg/agent"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// statusOptions is what `vigil status` reads from flags and environment.
type statusOptions struct {
	kubeconfig     string
	namespace      string
	all            bool
	leaseNamespace string
}

func statusSettings(o *statusOptions) []setting {
	return []setting{
		// KUBECONFIG (a path list) is read by clientcmd's loading rules.
		{"kubeconfig", []string{"k8s_config_file"}, "kubeconfig path (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)", str(&o.kubeconfig, "")},
		{"lease-namespace", []string{"vip_leasenamespace"}, "namespace of the agents' node Leases, for the BGP PEERS table", str(&o.leaseNamespace, "kube-system")},
	}
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{}
	table := statusSettings(o)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each LoadBalancer Service's VIPs, Lease holder and state, and each node's BGP peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), table, os.LookupEnv); err != nil {
				return err
			}
			if o.all && cmd.Flags().Changed("namespace") {
				return errors.New("use either --namespace or --all-namespaces")
			}
			return runStatus(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	register(cmd.Flags(), table)
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's)")
	cmd.Flags().BoolVarP(&o.all, "all-namespaces", "A", false, "all namespaces")
	return cmd
}

func runStatus(ctx context.Context, w io.Writer, o *statusOptions) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	cfg.UserAgent = "vigil/" + Version
	ns := o.namespace
	switch {
	case o.all:
		ns = metav1.NamespaceAll
	case ns == "":
		if ns, _, err = cc.Namespace(); err != nil {
			return fmt.Errorf("kubernetes config: %w", err)
		}
	}
	client, err := kubeclient.New(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	svcs, leases, err := listStatus(ctx, client, ns)
	if err != nil {
		return err
	}
	nodes, err := listNodePeers(ctx, client, o.leaseNamespace)
	if err := renderStatus(w, svcs, leases, nodes, err, time.Now()); err != nil {
		return err
	}
	return renderMembers(w, listMembers(ctx, client, o.leaseNamespace))
}

// listNodePeers reads the BGP sessions every agent published on its node
// Lease in namespace.
func listNodePeers(ctx context.Context, client nodestatus.LeasesGetter, namespace string) ([]nodestatus.Node, error) {
	sel := labels.Set{nodestatus.ManagedByLabel: nodestatus.ManagedByValue}.String()
	leases, err := client.Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list node leases in %s: %w", namespace, err)
	}
	return nodestatus.Read(leases.Items), nil
}

// statusClient is what listStatus reads.
type statusClient interface {
	Services(namespace string) kubeclient.Services
	Leases(namespace string) kubeclient.Leases
}

// listStatus lists the Services and Leases of namespace ("" = all).
func listStatus(ctx context.Context, client statusClient, namespace string) ([]corev1.Service, []coordinationv1.Lease, error) {
	svcs, err := client.Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	leases, err := client.Leases(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list leases: %w", err)
	}
	return svcs.Items, leases.Items, nil
}

// statusRow is one line of `vigil status`.
type statusRow struct {
	Namespace, Service, VIPs, Holder, LeaseAge, State string
}

// statusRows describes every LoadBalancer Service, sorted by namespace and
// name, with its Lease kubevip-<name> from leases.
func statusRows(svcs []corev1.Service, leases []coordinationv1.Lease, now time.Time) []statusRow {
	byKey := make(map[string]*coordinationv1.Lease, len(leases))
	for i := range leases {
		byKey[leases[i].Namespace+"/"+leases[i].Name] = &leases[i]
	}
	var rows []statusRow
	for i := range svcs {
		svc := &svcs[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		l := byKey[svc.Namespace+"/"+agent.LeaseName(svc.Name)]
		holder := leaseHolder(l)
		if h := svc.Annotations[kube.AnnotationVIPHost]; holder == "-" && h != "" {
			holder = h // shared-lease mode: the announcing node's own word
		}
		rows = append(rows, statusRow{
			Namespace: svc.Namespace, Service: svc.Name, VIPs: serviceVIPs(svc),
			Holder: holder, LeaseAge: leaseAge(l, now), State: serviceState(svc),
		})
	}
	slices.SortFunc(rows, func(a, b statusRow) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Service, b.Service)
	})
	return rows
}

// serviceVIPs shows what the Service asks for (annotation, then
// spec.loadBalancerIP), else what its status shows.
func serviceVIPs(svc *corev1.Service) string {
	if v := commaList(svc.Annotations[kube.AnnotationLoadBalancerIPs]); v != "" {
		return v
	}
	if v := commaList(svc.Spec.LoadBalancerIP); v != "" {
		return v
	}
	var ips []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			ips = append(ips, in.IP)
		}
	}
	if len(ips) == 0 {
		return "-"
	}
	return strings.Join(ips, ",")
}

// commaList normalizes "a, b,," to "a,b".
func commaList(s string) string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return strings.Join(out, ",")
}

func leaseHolder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "-"
	}
	return *l.Spec.HolderIdentity
}

// leaseAge is the time since the Lease's last renewal. A renewal slightly
// ahead of this clock shows as 0s.
func leaseAge(l *coordinationv1.Lease, now time.Time) string {
	if l == nil || l.Spec.RenewTime == nil {
		return "-"
	}
	return duration.ShortHumanDuration(max(now.Sub(l.Spec.RenewTime.Time), 0))
}

// serviceState reads vigil's condition: Announced, the reason it is not,
// or Pending before any node has looked at the Service.
func serviceState(svc *corev1.Service) string {
	c := meta.FindStatusCondition(svc.Status.Conditions, agent.ConditionAnnounced)
	switch {
	case c == nil:
		return "Pending"
	case c.Status == metav1.ConditionTrue:
		return "Announced"
	case c.Reason != "":
		return c.Reason
	}
	return "NotAnnounced"
}

// renderStatus writes the VIP table, then the PEERS table when any node
// published BGP sessions (or why they could not be read: nodesErr).
func renderStatus(w io.Writer, svcs []corev1.Service, leases []coordinationv1.Lease, nodes []nodestatus.Node, nodesErr error, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSERVICE\tVIP(S)\tHOLDER\tLEASE AGE\tSTATE")
	for _, r := range statusRows(svcs, leases, now) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Service, r.VIPs, r.Holder, r.LeaseAge, r.State)
	}
	if err := tw.Flush(); err != nil {
		return wrapWrite(err)
	}
	switch {
	case nodesErr != nil:
		_, err := fmt.Fprintf(w, "\nPEERS: %v\n", nodesErr)
		return wrapWrite(err)
	case len(nodes) == 0:
		return nil // no node runs BGP
	}
	return renderPeers(w, nodes, now)
}

// renderPeers writes the PEERS table after a blank line.
func renderPeers(w io.Writer, nodes []nodestatus.Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tPEER\tASN\tSTATE\tUPTIME\tPREFIXES\tLAST ERROR")
	for _, r := range peerRows(nodes, now) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Peer, r.ASN, r.State, r.Uptime, r.Prefixes, r.LastError)
	}
	return wrapWrite(tw.Flush())
}

func wrapWrite(err error) error {
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// peerRow is one line of the PEERS table.
type peerRow struct {
	Node, Peer, ASN, State, Uptime, Prefixes, LastError string
}

// peerRows describes every node's sessions, by node then peer. UPTIME is
// how long the session has been in its state (its up time when
// established). A node without sessions, or whose record is unreadable,
// gets one line saying so.
func peerRows(nodes []nodestatus.Node, now time.Time) []peerRow {
	var rows []peerRow
	for _, n := range nodes {
		switch {
		case n.Err != nil:
			rows = append(rows, peerRow{n.Name, "-", "-", "Unknown", "-", "-", n.Err.Error()})
			continue
		case len(n.Peers) == 0:
			rows = append(rows, peerRow{n.Name, "-", "-", "NoPeers", "-", "-", "-"})
			continue
		}
		peers := slices.Clone(n.Peers)
		slices.SortFunc(peers, func(a, b nodestatus.Peer) int { return strings.Compare(a.Peer, b.Peer) })
		for _, p := range peers {
			rows = append(rows, peerRow{
				Node: n.Name, Peer: p.Peer, ASN: strconv.FormatUint(uint64(p.ASN), 10), State: p.State,
				Uptime: sinceAge(p.Since, now), Prefixes: strconv.Itoa(p.Prefixes), LastError: orDash(p.LastError),
			})
		}
	}
	return rows
}

// sinceAge is the time since t ("-" when unknown; 0s when ahead of now).
func sinceAge(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(max(now.Sub(t), 0))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
