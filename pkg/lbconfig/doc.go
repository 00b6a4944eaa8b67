// Package lbconfig is the typed model of how vigil announces addresses by
// BGP: the speaker's own settings, its peers (with the nodes that peer with
// them), and BFD profiles. Every configuration source — kube-vip's bgp_*
// environment variables (parsed here from their string forms, read by
// pkg/cli), vigil's BGPPeer / BFDProfile objects, MetalLB's — becomes this
// one model; nothing below pkg/cli reads an environment variable or a CRD
// type to decide how to peer.
//
// The package is pure: parsers and validation, no I/O.
package lbconfig
