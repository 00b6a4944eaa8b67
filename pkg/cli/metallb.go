package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/pkg/ipam"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/pkg/metallb"
)

// metallbOptions: serving MetalLB's configuration (pkg/metallb).
type metallbOptions struct {
	enable    bool
	namespace string
}

func metallbSettings(o *metallbOptions) []setting {
	return []setting{
		{"metallb", []string{"vigil_metallb"}, "serve MetalLB's configuration: metallb.io objects (optional CRDs) and the legacy ConfigMap <namespace>/config", boolean(&o.enable, true)},
		{"metallb-namespace", []string{"vigil_metallb_namespace"}, "namespace of MetalLB's objects and ConfigMap", str(&o.namespace, metallb.DefaultNamespace)},
	}
}

// newMetalLB builds the source of MetalLB's configuration; nil when off.
// writes says whether this process records Events about its objects (the
// allocator's leader); onChange must only enqueue.
func newMetalLB(o metallbOptions, client *kubeclient.Clientset, dyn dynamic.Interface, rec record.EventRecorder, log *slog.Logger, writes func() bool, onChange func()) *metallb.Source {
	if !o.enable {
		return nil
	}
	var hooks metallb.Webhooks
	if writes != nil {
		hooks = webhookReader{client}
	}
	return metallb.New(client, dyn, client.Secrets(o.namespace), metallb.Options{
		Namespace: o.namespace, Log: log, Recorder: rec, Writes: writes, OnChange: onChange, Webhooks: hooks,
	})
}

// webhookReader reads validating webhooks and their Services' endpoints.
type webhookReader struct{ cs webhookClient }

// webhookClient is what webhookReader reads.
type webhookClient interface {
	ValidatingWebhookConfigurations() kubeclient.ValidatingWebhookConfigurations
	EndpointSlices(namespace string) kubeclient.EndpointSlices
}

func (w webhookReader) Validating(ctx context.Context) ([]admissionv1.ValidatingWebhookConfiguration, error) {
	l, err := w.cs.ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (w webhookReader) ReadyEndpoints(ctx context.Context, namespace, service string) (int, error) {
	l, err := w.cs.EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// poolSources are the allocator's extra pool sources.
func poolSources(mlb *metallb.Source) []ipam.PoolSource {
	if mlb == nil {
		return nil
	}
	return []ipam.PoolSource{metallbPools{mlb}}
}

// metallbPools serves MetalLB's pools to the allocator.
type metallbPools struct{ src *metallb.Source }

func (metallbPools) Name() string   { return "MetalLB" }
func (p metallbPools) Synced() bool { return p.src.Synced() }

func (p metallbPools) Pools() []ipam.SourcePool {
	var out []ipam.SourcePool
	for _, mp := range p.src.Pools() {
		o := mp.Object
		out = append(out, ipam.SourcePool{Pool: mp.Pool, Object: &corev1.ObjectReference{
			APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, UID: types.UID(o.UID)}})
	}
	return out
}

// configSource is one source of the announcement configuration.
type configSource interface {
	Config() lbconfig.Config
	Synced() bool
}

// mergedConfig is every announcement source at once: vigil.io objects and
// MetalLB's (either may be off). It reads the manager's sources at each
// call, so it may be handed out before they are all built.
type mergedConfig struct{ m *manager }

func (c mergedConfig) sources() []configSource {
	var out []configSource
	if c.m.crds != nil {
		out = append(out, c.m.crds)
	}
	if c.m.mlb != nil {
		out = append(out, c.m.mlb)
	}
	return out
}

// Synced reports whether every source has read its objects.
func (c mergedConfig) Synced() bool {
	for _, s := range c.sources() {
		if !s.Synced() {
			return false
		}
	}
	return true
}

func (c mergedConfig) Config() lbconfig.Config {
	var out lbconfig.Config
	for _, s := range c.sources() {
		out = out.Merge(s.Config())
	}
	return out
}

// configSources is the announcement configuration from every source.
func (m *manager) configSources() mergedConfig { return mergedConfig{m} }

// metallbAgent builds the agent's MetalLB source (it only logs problems:
// the allocator's leader records the Events).
func (m *manager) metallbAgent(client *kubeclient.Clientset) error {
	if !m.o.metallb.enable {
		return nil
	}
	dyn, err := dynamic.NewForConfig(m.cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	m.mlb = newMetalLB(m.o.metallb, client, dyn, nil, m.log, nil, func() {
		if m.peers != nil {
			m.peers.Changed()
		}
		if m.ag != nil {
			m.ag.EnqueueAll()
		}
		m.warnBGPOff()
	})
	return nil
}

// warnBGPOff says, once, that MetalLB's BGP configuration is not served
// while BGP is off.
func (m *manager) warnBGPOff() {
	cfg := m.mlb.Config()
	if m.o.bgp.enable || len(cfg.Peers)+len(cfg.BGPAdvertisements) == 0 || !m.bgpOffSaid.CompareAndSwap(false, true) {
		return
	}
	m.log.Warn("MetalLB's configuration has BGP peers or advertisements but bgp_enable is false: its BGP pools are not announced until vigil runs with bgp_enable=true")
}

// announcesOn reports whether this node announces on one of the listed
// interfaces (an L2Advertisement's interfaces): with vip_interface (or
// vip_servicesinterface) set, whether it is listed; otherwise (the
// interface is chosen by subnet) whether any listed one exists here.
func (o *managerOptions) announcesOn(list []string) bool {
	iface := o.servicesIface
	if iface == "" {
		iface = o.iface
	}
	if iface != "" && iface != "auto" {
		return slices.Contains(list, iface)
	}
	return slices.ContainsFunc(list, func(name string) bool {
		_, err := net.InterfaceByName(name)
		return err == nil
	})
}
