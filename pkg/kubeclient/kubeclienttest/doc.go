// Package kubeclienttest serves kubeclient's methods from a client-go
// clientset, so tests can hand vigil's packages client-go's fake
// clientset (or a clientset of a test API server). Only tests import it:
// it links the clientset kubeclient exists to avoid.
package kubeclienttest
