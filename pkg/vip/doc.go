// Package vip is the node's dataplane for virtual IPs: it binds an address
// on the right interface (netif), announces it at once and keeps announcing
// it (announce), and journals what it bound so that an agent restarted after
// a crash removes addresses its previous life left behind.
//
// It knows nothing of Kubernetes. Only the agent's reconcile worker calls Up
// and Down.
package vip
