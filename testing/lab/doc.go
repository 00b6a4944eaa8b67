// Package lab is vigil's end-to-end test ground: a real kube-apiserver and
// etcd on loopback (built from the Go module proxy and cached by version), and
// network namespaces on a bridge acting as nodes, a client, a gateway running
// dnsmasq and miniupnpd, and a WAN host behind it.
//
// Safety: the lab never adds addresses to, sends packets on, or changes the
// host's real interfaces or the root network namespace. The only things it
// creates outside its own namespaces are listeners on the root loopback (etcd
// and kube-apiserver). Every namespace is named with the creating process's
// PID (vgl-<pid>-<n>-<role>) so that a later run can sweep namespaces left
// behind by a run that was killed.
//
// Agents inside node namespaces reach the API server at https://127.0.0.1:6443
// in their own namespace: a forwarder owned by the test process listens there
// and relays to the API server on the root loopback, the way a control-plane
// static pod talks to localhost:6443. CutAPI drops that traffic with an
// nftables rule inside the node's namespace, so a node can be partitioned from
// the API while its LAN keeps working.
package lab
