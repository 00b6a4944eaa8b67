// Package crdconfig is the vigil.io source of the announcement
// configuration: it watches the BGPPeer, BGPAdvertisement, BFDProfile and
// L2Advertisement objects (group vigil.io, version v1alpha1; the CRDs are
// the embedded CRDs, printed by `vigil manifest crds` into
// manifests/bgp-crds.yaml) with dynamic informers and turns them into the
// one typed model, lbconfig.Config. Reference: docs/bgp-crds.md.
//
// The CRDs are optional: while they are not installed the source logs it
// once and serves an empty configuration; it looks at discovery every
// interval and picks them up once installed (as pkg/ipam does for IPPools).
// A malformed object — or a BGPPeer whose password Secret is missing — is
// left out, gets a Warning Event naming the field (and, for a BGPPeer, the
// condition Valid=False with that reason), while the others keep working.
package crdconfig
