// Package helm installs charts/vigil with the helm binary
// testing/helm/build.sh caches (helm stays out of vigil's go.mod) into a
// lab control plane of its own: Helm owns the cluster-scoped objects it
// creates, so it cannot share one with testing/e2e, which applies
// manifests/ directly. The chart's equality with `vigil manifest` and its
// lint are unit tests (pkg/cli TestChart*).
package helm
