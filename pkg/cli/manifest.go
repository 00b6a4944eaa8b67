package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/pkg/metallb"
)

// Names and paths shared by the generated manifests.
const (
	manifestName    = "vigil"
	imageRepository = "ghcr.io/vigil-lb/vigil"
	metricsPort     = 2112
	stateDir        = "/run/vigil"
	adminKubeconfig = "/etc/kubernetes/admin.conf"
	nameLabel       = "app.kubernetes.io/name"
	controlPlaneKey = "node-role.kubernetes.io/control-plane"
)

// manifestOptions is what `vigil manifest pod|daemonset` reads from flags.
type manifestOptions struct {
	image           string
	iface           string
	serviceElection bool
	upnp            bool
	allocator       bool
	namespace       string
	leaseDuration   int
	renewDeadline   int
	retryPeriod     int
	electionMode    string
	arp             bool
	bgp             bool
	bgpAS           string
	bgpPeers        string
	kv              manifestKubevip
	members         bool
}

// defaultImage is the image of this build: Version's tag, or latest for a
// development build.
func defaultImage() string {
	tag := Version
	if tag == "" || tag == "dev" {
		tag = "latest"
	}
	return imageRepository + ":" + tag
}

func newManifestCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Print Kubernetes manifests that run vigil",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newManifestSubcommand("pod",
		"Print a static Pod for control-plane nodes (kubeconfig from "+adminKubeconfig+")", podManifest))
	cmd.AddCommand(newManifestSubcommand("daemonset",
		"Print a ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet", daemonSetManifest))
	cmd.AddCommand(newCRDsCommand(), newMetalLBCRDsCommand())
	return cmd
}

// newCRDsCommand prints the BGP configuration CRDs (manifests/bgp-crds.yaml).
func newCRDsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "crds",
		Short: "Print the BGPPeer, BGPAdvertisement, BFDProfile and L2Advertisement CRDs (vigil.io; the IPPool CRD is manifests/ippool-crd.yaml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(crdconfig.CRDs)
			return err
		},
	}
}

// newMetalLBCRDsCommand prints MetalLB's CRDs as vigil serves them
// (manifests/metallb-crds.yaml), for clusters without MetalLB.
func newMetalLBCRDsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "metallb-crds",
		Short: "Print CRDs for MetalLB's kinds (metallb.io), schema-compatible with MetalLB's, for clusters without MetalLB (optional)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(metallb.CRDs)
			return err
		},
	}
}

func newManifestSubcommand(use, short string, build func(*manifestOptions) ([]runtime.Object, error)) *cobra.Command {
	o := &manifestOptions{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.bgpDefaults(cmd.Flags())
			if err := o.validate(); err != nil {
				return err
			}
			objs, err := build(o)
			if err != nil {
				return err
			}
			out, err := renderYAML(objs)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	addManifestFlags(cmd.Flags(), o)
	return cmd
}

func addManifestFlags(fs *pflag.FlagSet, o *manifestOptions) {
	fs.StringVar(&o.image, "image", defaultImage(), "container image")
	fs.StringVar(&o.namespace, "namespace", "kube-system", "namespace of the Pod / DaemonSet and ServiceAccount")
	fs.StringVar(&o.iface, "interface", "", "interface to bind VIPs on (empty: the one whose subnet holds the VIP)")
	fs.BoolVar(&o.serviceElection, "service-election", true, "one Lease per Service")
	fs.BoolVar(&o.upnp, "upnp", false, "UPnP port forwards for Services annotated kube-vip.io/forwardUPNP=true")
	fs.BoolVar(&o.allocator, "allocator", false, "also run the address allocator (IPPools; one leader among the agents)")
	fs.BoolVar(&o.arp, "arp", true, "announce VIPs with gratuitous ARP / unsolicited NDP")
	fs.IntVar(&o.leaseDuration, "lease-duration", 5, "Lease duration, seconds")
	fs.IntVar(&o.renewDeadline, "renew-deadline", 3, "renew deadline, seconds")
	fs.IntVar(&o.retryPeriod, "retry-period", 1, "renew interval, seconds")
	fs.StringVar(&o.electionMode, "election-mode", defaultElectionMode, "per-Service election (vigil_election_mode): service (each Service Lease renewed) or node (one heartbeat Lease per node, for large clusters; needs --service-election)")
	fs.BoolVar(&o.bgp, "bgp", false, "advertise VIPs by BGP from every eligible node (ECMP): sets --service-election=false and --arp=false unless given")
	fs.StringVar(&o.bgpAS, "bgp-as", "65000", "this cluster's AS number (bgp_as)")
	fs.StringVar(&o.bgpPeers, "bgp-peers", "", "BGP peers in kube-vip's bgp_peers form (or use BGPPeer objects)")
	addKubevipManifestFlags(fs, &o.kv)
	fs.BoolVar(&o.members, "members", false, "LAN liveness (vigil_members): keep VIPs through an API server outage; the key comes from the Secret "+membersSecret+" (key "+membersSecretKey+") that you create")
}

// bgpDefaults: with --bgp every eligible node advertises (no election) and
// nothing is announced by ARP, unless the flags say otherwise.
func (o *manifestOptions) bgpDefaults(fs *pflag.FlagSet) {
	if !o.bgp {
		return
	}
	if !fs.Changed("service-election") {
		o.serviceElection = false
	}
	if !fs.Changed("arp") {
		o.arp = false
	}
}

// validate rejects manifests whose agent would refuse to start.
func (o *manifestOptions) validate() error {
	if strings.TrimSpace(o.image) == "" {
		return errors.New("--image must not be empty")
	}
	if o.bgp {
		if _, err := parseASN("--bgp-as", o.bgpAS); err != nil {
			return err
		}
		if _, err := lbconfig.ParseKubeVIPPeers(o.bgpPeers); o.bgpPeers != "" && err != nil {
			return fmt.Errorf("--bgp-peers: %w", err)
		}
	}
	if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
		return fmt.Errorf("--namespace %q: %s", o.namespace, strings.Join(errs, "; "))
	}
	if err := checkElectionMode(o.electionMode); err != nil {
		return fmt.Errorf("--election-mode=%w", err)
	}
	m := managerDefaults()
	m.nodeName = "manifest" // set from spec.nodeName at run time
	m.perService, m.election.mode = o.serviceElection, o.electionMode
	m.leaseDuration, m.renewDeadline, m.retryPeriod = time.Duration(o.leaseDuration)*time.Second, time.Duration(o.renewDeadline)*time.Second, time.Duration(o.retryPeriod)*time.Second
	if err := m.validate(); err != nil {
		return fmt.Errorf("the generated manager would not start: %w", err)
	}
	return nil
}

// managerDefaults returns the manager's options with every default applied.
func managerDefaults() *managerOptions {
	o := &managerOptions{}
	register(pflag.NewFlagSet("defaults", pflag.ContinueOnError), managerSettings(o))
	return o
}

// envName returns the first environment variable of the manager setting
// behind flag, so the manifests use exactly the names the manager reads.
func envName(flag string) (string, error) {
	for _, s := range managerSettings(&managerOptions{}) {
		if s.flag != flag {
			continue
		}
		if len(s.env) == 0 {
			return "", fmt.Errorf("manager flag --%s has no environment variable", flag)
		}
		return s.env[0], nil
	}
	return "", fmt.Errorf("no manager flag --%s", flag)
}

// envVar is one manager setting for the container: a value, or a fieldRef
// when value is empty and field is set, or a Secret's key when secret is
// set ("name/key").
type envVar struct {
	flag, value, field, secret string
}

func containerEnv(vars []envVar) ([]corev1.EnvVar, error) {
	out := make([]corev1.EnvVar, 0, len(vars))
	for _, v := range vars {
		name, err := envName(v.flag)
		if err != nil {
			return nil, fmt.Errorf("manifest env: %w", err)
		}
		e := corev1.EnvVar{Name: name, Value: v.value}
		if v.field != "" {
			e.ValueFrom = &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: v.field}}
		}
		if name, key, ok := strings.Cut(v.secret, "/"); ok {
			e.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
		}
		out = append(out, e)
	}
	return out, nil
}

// settingsEnv is the environment both manifests give the manager.
func (o *manifestOptions) settingsEnv() []envVar {
	vars := []envVar{
		{flag: "services", value: "true"},
		{flag: "service-election", value: strconv.FormatBool(o.serviceElection)},
		{flag: "arp", value: strconv.FormatBool(o.arp)},
	}
	if o.iface != "" {
		vars = append(vars, envVar{flag: "interface", value: o.iface})
	}
	vars = append(vars,
		envVar{flag: "lease-duration", value: strconv.Itoa(o.leaseDuration)},
		envVar{flag: "renew-deadline", value: strconv.Itoa(o.renewDeadline)},
		envVar{flag: "retry-period", value: strconv.Itoa(o.retryPeriod)},
	)
	if o.electionMode != defaultElectionMode {
		vars = append(vars, envVar{flag: "election-mode", value: o.electionMode})
	}
	if o.upnp {
		vars = append(vars, envVar{flag: "upnp", value: "true"})
	}
	if o.allocator {
		vars = append(vars, envVar{flag: "allocator", value: "true"})
	}
	if o.bgp {
		vars = append(vars, envVar{flag: "bgp", value: "true"}, envVar{flag: "bgp-as", value: o.bgpAS})
		if o.bgpPeers != "" {
			vars = append(vars, envVar{flag: "bgp-peers", value: o.bgpPeers})
		}
	}
	vars = append(vars, o.kv.env()...)
	vars = append(vars, o.membersEnv()...)
	return append(vars,
		envVar{flag: "prometheus-server", value: ":" + strconv.Itoa(metricsPort)},
		envVar{flag: "node-name", field: "spec.nodeName"},
	)
}

// podEnv adds the Pod's own name and namespace (POD_NAMESPACE is also the
// manager's fallback for the shared Lease's namespace).
func podEnv(env []corev1.EnvVar) []corev1.EnvVar {
	for _, f := range []struct{ name, path string }{{"POD_NAMESPACE", "metadata.namespace"}, {"POD_NAME", "metadata.name"}} {
		env = append(env, corev1.EnvVar{Name: f.name, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: f.path},
		}})
	}
	return env
}

func manifestLabels() map[string]string { return map[string]string{nameLabel: manifestName} }

func hostPathVolume(name, path string, t corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t},
	}}
}

// podSpec is the spec both manifests share; extra adds environment
// settings (after the common ones).
func (o *manifestOptions) podSpec(extra ...envVar) (corev1.PodSpec, error) {
	env, err := containerEnv(append(o.settingsEnv(), extra...))
	if err != nil {
		return corev1.PodSpec{}, err
	}
	return corev1.PodSpec{
		HostNetwork: true,
		Containers: []corev1.Container{{
			Name:            manifestName,
			Image:           o.image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            []string{"manager"},
			Env:             podEnv(env),
			// uid 0 (the image's user is 65532) with every capability
			// dropped but two: Kubernetes gives a non-root container its
			// added capabilities only in the bounding set.
			SecurityContext: &corev1.SecurityContext{
				RunAsUser: new(int64(0)),
				Capabilities: &corev1.Capabilities{
					Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
					Drop: []corev1.Capability{"ALL"},
				},
				AllowPrivilegeEscalation: new(false),
				ReadOnlyRootFilesystem:   new(true),
			},
			LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromInt32(metricsPort), Scheme: corev1.URISchemeHTTP,
				}},
				InitialDelaySeconds: 10,
				PeriodSeconds:       10,
				TimeoutSeconds:      3,
				FailureThreshold:    3,
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "state", MountPath: stateDir}},
		}},
		Volumes: []corev1.Volume{hostPathVolume("state", stateDir, corev1.HostPathDirectoryOrCreate)},
	}, nil
}

// podManifest is a static Pod for a control-plane node: it reaches the API
// server with the node's admin kubeconfig.
func podManifest(o *manifestOptions) ([]runtime.Object, error) {
	spec, err := o.podSpec(envVar{flag: "kubeconfig", value: adminKubeconfig})
	if err != nil {
		return nil, err
	}
	c := &spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "kubeconfig", MountPath: adminKubeconfig, ReadOnly: true})
	spec.Volumes = append(spec.Volumes, hostPathVolume("kubeconfig", adminKubeconfig, corev1.HostPathFile))
	return []runtime.Object{&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: manifestName, Namespace: o.namespace, Labels: manifestLabels()},
		Spec:       spec,
	}}, nil
}

// ClusterRoleRules are the permissions the manager needs, and no more.
func ClusterRoleRules() []rbacv1.PolicyRule {
	return append([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		// Node eligibility: the exclude-from-external-load-balancers label
		// and the NetworkUnavailable condition.
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		// The allocator (svc_allocator / vigil allocator): pools, and only
		// kube-vip-cloud-provider's ConfigMap of all ConfigMaps; Namespaces
		// for their labels (MetalLB's serviceAllocation.namespaceSelectors).
		{APIGroups: []string{"vigil.io"}, Resources: []string{"ippools"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"vigil.io"}, Resources: []string{"ippools/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"kubevip"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
	}, append(crdconfig.ClusterRoleRules(), metallb.ClusterRoleRules()...)...)
}

// daemonSetManifest runs vigil on every Linux node, control planes included,
// with its own ServiceAccount and least-privilege ClusterRole.
func daemonSetManifest(o *manifestOptions) ([]runtime.Object, error) {
	spec, err := o.podSpec()
	if err != nil {
		return nil, err
	}
	spec.ServiceAccountName = manifestName
	spec.NodeSelector = map[string]string{corev1.LabelOSStable: "linux"}
	spec.Tolerations = []corev1.Toleration{{Key: controlPlaneKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	meta := func(namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: manifestName, Namespace: namespace, Labels: manifestLabels()}
	}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(o.namespace)},
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
			ObjectMeta: meta(""),
			Rules:      append(ClusterRoleRules(), o.kv.rules()...),
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
			ObjectMeta: meta(""),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: manifestName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: manifestName, Namespace: o.namespace}},
		},
		// BGPPeer password Secrets: get, in vigil's own namespace only.
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
			ObjectMeta: meta(o.namespace),
			Rules:      crdconfig.SecretRoleRules(),
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
			ObjectMeta: meta(o.namespace),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: manifestName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: manifestName, Namespace: o.namespace}},
		},
		&appsv1.DaemonSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "DaemonSet"},
			ObjectMeta: meta(o.namespace),
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: manifestLabels()},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: manifestLabels()}, Spec: spec},
				// One node at a time: the others keep (or take over) its VIPs.
				UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
					Type:          appsv1.RollingUpdateDaemonSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: new(intstr.FromInt32(1))},
				},
			},
		},
	}, nil
}

// renderYAML writes objs as YAML documents separated by "---", without the
// zero status the typed objects carry.
func renderYAML(objs []runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range objs {
		doc, err := objectYAML(obj)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(doc)
	}
	return buf.Bytes(), nil
}

func objectYAML(obj runtime.Object) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %T: %w", obj, err)
	}
	delete(m, "status") // the API server owns it
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("yaml %T: %w", obj, err)
	}
	return out, nil
}
