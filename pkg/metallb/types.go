package metallb

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// MetalLB's API groups and versions.
var (
	V1beta1 = schema.GroupVersion{Group: "metallb.io", Version: "v1beta1"}
	V1beta2 = schema.GroupVersion{Group: "metallb.io", Version: "v1beta2"}
)

// The resources vigil reads.
var (
	IPAddressPools    = V1beta1.WithResource("ipaddresspools")
	L2Advertisements  = V1beta1.WithResource("l2advertisements")
	BGPAdvertisements = V1beta1.WithResource("bgpadvertisements")
	BFDProfiles       = V1beta1.WithResource("bfdprofiles")
	Communities       = V1beta1.WithResource("communities")
	BGPPeers          = V1beta2.WithResource("bgppeers")
)

// Resources in the order they are converted.
var Resources = []schema.GroupVersionResource{IPAddressPools, Communities, BFDProfiles, BGPPeers, BGPAdvertisements, L2Advertisements}

// MetalLB's defaults for where its configuration lives.
const (
	DefaultNamespace = "metallb-system"
	ConfigMapName    = "config" // legacy ConfigMap, key ConfigMapKey
	ConfigMapKey     = "config"
)

// Pool is an address pool of MetalLB's configuration.
type Pool struct {
	allocator.Pool
	Labels map[string]string
	// Object names where the pool is defined: an IPAddressPool, or the
	// legacy ConfigMap.
	Object Ref
}

// Ref names a namespaced object for Events.
type Ref struct {
	APIVersion, Kind, Namespace, Name string
	UID                               string
}

// ipAddressPoolSpec is IPAddressPool's spec (metallb.io/v1beta1).
type ipAddressPoolSpec struct {
	Addresses         []string           `json:"addresses"`
	AutoAssign        *bool              `json:"autoAssign,omitempty"`
	AvoidBuggyIPs     bool               `json:"avoidBuggyIPs,omitempty"`
	ServiceAllocation *serviceAllocation `json:"serviceAllocation,omitempty"`
}

type serviceAllocation struct {
	Priority           int                    `json:"priority,omitempty"`
	Namespaces         []string               `json:"namespaces,omitempty"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// communitySpec is Community's spec: aliases for BGP communities.
type communitySpec struct {
	Communities []communityAlias `json:"communities,omitempty"`
}

type communityAlias struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}
