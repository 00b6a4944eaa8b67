// Package kubeclient is vigil's client of the Kubernetes API: typed clients
// of the few built-in resources vigil reads and writes, over a scheme that
// knows only their API groups; informers over them and over the dynamic
// client; the Event sink; and discovery of one group version.
//
// It stands in for client-go's clientset, informer factory, discovery
// client and dynamic informer factory, which register every API group of
// Kubernetes (and their apply configurations) and so made the binary tens
// of megabytes larger. Behaviour is theirs: one HTTP client and one QPS
// budget per Clientset, protobuf for built-in types, informers without
// resync that index by namespace, WatchList where the client supports it.
// One addition: PromptCache, an informer whose retries after a failed list
// or watch are a constant interval apart, for the Lease cache the elections
// need back as soon as the API server is.
//
// Consumers declare the methods they use as interfaces of their own; tests
// serve them from client-go's fake clientset through kubeclienttest.
package kubeclient
