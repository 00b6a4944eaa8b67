package crdconfig

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// The converters below serve MetalLB's kinds too (pkg/metallb): the
// vigil.io kinds have MetalLB's field names, so an object of either group
// converts the same way. Errors name the bad field under spec; Reason turns
// one into an Event reason.

// PeerFrom converts a BGPPeer. profiles are the valid BFD profiles by name;
// password reads a passwordSecret (its errors should name passwordSecret).
func PeerFrom(obj *unstructured.Unstructured, profiles map[string]*lbconfig.BFD, password func(corev1.SecretReference) (string, error)) (lbconfig.Peer, error) {
	return peerFrom(obj, peerRefs{profiles: profiles, password: password})
}

// BFDFrom converts a BFDProfile (MetalLB's defaults: 300 ms, multiplier 3).
func BFDFrom(obj *unstructured.Unstructured) (*lbconfig.BFD, error) { return bfdFrom(obj) }

// BGPAdvertisementFrom converts a BGPAdvertisement whose communities are
// literals (resolve aliases first).
func BGPAdvertisementFrom(obj *unstructured.Unstructured) (lbconfig.BGPAdvertisement, error) {
	return bgpAdvFrom(obj)
}

// L2AdvertisementFrom converts an L2Advertisement.
func L2AdvertisementFrom(obj *unstructured.Unstructured) (lbconfig.L2Advertisement, error) {
	return l2AdvFrom(obj)
}

// FieldError is an error naming a field (Reason reads it).
func FieldError(field, format string, args ...any) error { return fieldErrorf(field, format, args...) }

// Reason is the Event reason for a conversion error: Invalid<Field>.
func Reason(err error) string { return reason(err) }

// IsTransient reports whether err says nothing about the object (the API
// server did not answer while a Secret was read).
func IsTransient(err error) bool { return errors.Is(err, errTransient) }

// Transient marks an API error as transient.
func Transient(err error) error { return transient(err) }

// Prefix puts a path in front of the field a field error names
// ("addresses[0]" under "address-pools[2]"); other errors get it as text.
func Prefix(prefix string, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return &fieldError{field: prefix + "." + fe.field, msg: fe.msg}
	}
	return &fieldError{field: prefix, msg: err.Error()}
}
