package crdconfig

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// bgpAdvFrom converts a BGPAdvertisement.
func bgpAdvFrom(obj *unstructured.Unstructured) (lbconfig.BGPAdvertisement, error) {
	var s bgpAdvSpec
	if err := specOf(obj, &s); err != nil {
		return lbconfig.BGPAdvertisement{}, err
	}
	a := lbconfig.BGPAdvertisement{
		Name: obj.GetName(), Pools: s.IPAddressPools, Peers: s.Peers, LocalPref: s.LocalPref,
		AggregationLength: 32, AggregationLengthV6: 128,
	}
	var err error
	if a.PoolSelectors, err = selectors("ipAddressPoolSelectors", s.IPAddressPoolSelectors); err != nil {
		return lbconfig.BGPAdvertisement{}, err
	}
	if a.Nodes, err = selectors("nodeSelectors", s.NodeSelectors); err != nil {
		return lbconfig.BGPAdvertisement{}, err
	}
	for i, c := range s.Communities {
		v, err := lbconfig.ParseCommunity(c)
		if err != nil {
			return lbconfig.BGPAdvertisement{}, fieldErrorf(fmt.Sprintf("communities[%d]", i), "%v", err)
		}
		a.Communities = append(a.Communities, v)
	}
	if err := aggregation(&a, s); err != nil {
		return lbconfig.BGPAdvertisement{}, err
	}
	if err := a.Validate(); err != nil {
		return lbconfig.BGPAdvertisement{}, asFieldError(err)
	}
	return a, nil
}

// aggregation reads the prefix lengths (MetalLB's defaults 32 and 128; 0,
// which would announce a default route, is refused).
func aggregation(a *lbconfig.BGPAdvertisement, s bgpAdvSpec) error {
	if l := s.AggregationLength; l != nil {
		if *l < 1 || *l > 32 {
			return fieldErrorf("aggregationLength", "%d is not 1-32", *l)
		}
		a.AggregationLength = int(*l)
	}
	if l := s.AggregationLengthV6; l != nil {
		if *l < 1 || *l > 128 {
			return fieldErrorf("aggregationLengthV6", "%d is not 1-128", *l)
		}
		a.AggregationLengthV6 = int(*l)
	}
	return nil
}

// l2AdvFrom converts an L2Advertisement.
func l2AdvFrom(obj *unstructured.Unstructured) (lbconfig.L2Advertisement, error) {
	var s l2AdvSpec
	if err := specOf(obj, &s); err != nil {
		return lbconfig.L2Advertisement{}, err
	}
	a := lbconfig.L2Advertisement{Name: obj.GetName(), Pools: s.IPAddressPools, Interfaces: s.Interfaces}
	var err error
	if a.PoolSelectors, err = selectors("ipAddressPoolSelectors", s.IPAddressPoolSelectors); err != nil {
		return lbconfig.L2Advertisement{}, err
	}
	if a.Nodes, err = selectors("nodeSelectors", s.NodeSelectors); err != nil {
		return lbconfig.L2Advertisement{}, err
	}
	if err := a.Validate(); err != nil {
		return lbconfig.L2Advertisement{}, asFieldError(err)
	}
	return a, nil
}
