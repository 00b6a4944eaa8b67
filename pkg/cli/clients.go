package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// The Lease client's budget. Per-Service mode renews each held Lease once
// per retry period out of it, so it also bounds how many a node holds
// (maxHeld).
const (
	leaseQPS   = 150
	leaseBurst = 300
)

// apiClients returns a client for everything but Leases (qps/burst) and one
// for Leases with a budget of its own, so a burst of other writes never
// delays a renewal. cfg is not modified.
func apiClients(cfg *rest.Config, userAgent string, qps float32, burst int) (main, leases *kubeclient.Clientset, mainCfg *rest.Config, err error) {
	mainCfg = rest.CopyConfig(cfg)
	mainCfg.UserAgent = userAgent
	leaseCfg := rest.CopyConfig(mainCfg)
	leaseCfg.QPS, leaseCfg.Burst = leaseQPS, leaseBurst
	mainCfg.QPS, mainCfg.Burst = qps, burst
	if main, err = kubeclient.New(mainCfg); err != nil {
		return nil, nil, nil, err
	}
	if leases, err = kubeclient.New(leaseCfg); err != nil {
		return nil, nil, nil, err
	}
	return main, leases, mainCfg, nil
}

// eventRecorder records Events through client until stop is called.
func eventRecorder(ctx context.Context, client *kubeclient.Clientset, component, host string) (r record.EventRecorder, stop func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(kubeclient.EventSink(client.Events))
	return b.NewRecorder(client.Scheme(), corev1.EventSource{Component: component, Host: host}), b.Shutdown
}

// instanceID is a random id for this process start (the Lease annotation
// that keeps a restarted agent from trusting its previous life's Lease).
func instanceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
