// Package cli is the only place that wires vigil together: it parses flags
// and kube-vip's environment variables into each package's own config and
// starts the pieces.
package cli
