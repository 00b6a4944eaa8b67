package crdconfig

import (
	_ "embed"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CRDs is the YAML of the four CustomResourceDefinitions
// (`vigil manifest crds`, manifests/bgp-crds.yaml).
//
//go:embed crds.yaml
var CRDs []byte

// GroupVersion is the API group and version of the four kinds.
var GroupVersion = schema.GroupVersion{Group: "vigil.io", Version: "v1alpha1"}

// The four resources.
var (
	BGPPeers          = GroupVersion.WithResource("bgppeers")
	BGPAdvertisements = GroupVersion.WithResource("bgpadvertisements")
	BFDProfiles       = GroupVersion.WithResource("bfdprofiles")
	L2Advertisements  = GroupVersion.WithResource("l2advertisements")
)

// resources in the order the source reads them.
var resources = []schema.GroupVersionResource{BFDProfiles, BGPPeers, BGPAdvertisements, L2Advertisements}
