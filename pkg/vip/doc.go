// Package vip is the node's dataplane for virtual IPs: it binds an address
// on the right interface (netif), announces it at once and keeps announcing
// it (announce), and journals what it bound so that an agent restarted after
// a crash removes addresses its previous life left behind.
//
// A VIP can be bound with an end (Up's until): the kernel address lifetime
// (netif.BindFor) is set so that the kernel removes the address by that
// instant by itself, and the announcer stops announcing it then, so a stopped
// or killed agent cannot keep a VIP after its lease ran out. Every Up with a
// later until refreshes both in place, without announcing again.
//
// It knows nothing of Kubernetes. Only the agent's reconcile worker calls Up
// and Down.
package vip
