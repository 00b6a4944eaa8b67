package ipam

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// kube-vip-cloud-provider's ConfigMap (kube-system/kubevip).
const (
	ConfigMapNamespace = "kube-system"
	ConfigMapName      = "kubevip"
	configMapPoolName  = "kubevip-cm-" // + "global" or the namespace
)

// configMapPools turns kube-vip-cloud-provider's keys into pools:
// cidr-global / range-global for every namespace, cidr-<ns> / range-<ns>
// for one namespace (preferred there, as in kube-vip-cloud-provider), and
// allow-share-<ns>: "true" letting that namespace's Services share
// addresses. A broken key is reported, the others still load.
func configMapPools(cm *corev1.ConfigMap) (pools []allocator.Pool, shareNamespaces []string, errs []error) {
	if cm == nil {
		return nil, nil, nil
	}
	byScope := map[string][]allocator.Range{}
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		v := cm.Data[k]
		switch {
		case strings.HasPrefix(k, "allow-share-"):
			if strings.EqualFold(strings.TrimSpace(v), "true") {
				shareNamespaces = append(shareNamespaces, strings.TrimPrefix(k, "allow-share-"))
			}
		case strings.HasPrefix(k, "cidr-"), strings.HasPrefix(k, "range-"):
			kind, scope, _ := strings.Cut(k, "-")
			parse := allocator.ParseList
			if kind == "cidr" {
				// As kube-vip-cloud-provider: a CIDR offers its host
				// addresses (no network or broadcast address).
				parse = allocator.ParseHostCIDRs
			}
			rs, err := parse(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("ConfigMap %s/%s key %s: %w", cm.Namespace, cm.Name, k, err))
				continue
			}
			byScope[scope] = append(byScope[scope], rs...)
		}
	}
	for _, scope := range slices.Sorted(maps.Keys(byScope)) {
		p := allocator.Pool{Name: configMapPoolName + scope, Ranges: byScope[scope], AutoAssign: true}
		if scope != "global" {
			p.Namespaces = []string{scope}
			p.Priority = -1 // a namespace's own range comes first
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("ConfigMap %s/%s pool %s: %w", cm.Namespace, cm.Name, p.Name, err))
			continue
		}
		pools = append(pools, p)
	}
	return pools, shareNamespaces, errs
}
