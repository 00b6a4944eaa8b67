// Package e2e proves vigil end to end in the lab: a real kube-apiserver and
// etcd, `vigil manager` running in node namespaces, a client that resolves
// and connects to VIPs. Tests carry the e2e build tag.
package e2e
