package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/ipam"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/metallb"
	"github.com/vigil-lb/vigil/pkg/metrics"
)

// saNamespaceFile holds the Pod's namespace inside a Pod.
const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// allocatorOptions is what the allocator reads (standalone or in the
// manager).
type allocatorOptions struct {
	podName      string
	podNamespace string
	leaseName    string
	class        kube.ClassPolicy // classSettings: the manager's own, or the allocator command's
	metallb      metallbOptions   // metallbSettings: the manager's own, or the allocator command's
}

func allocatorSettings(o *allocatorOptions) []setting {
	return []setting{
		{"pod-name", []string{"POD_NAME"}, "allocator identity: the holder of its Lease", str(&o.podName, "")},
		{"pod-namespace", []string{"vigil_allocator_namespace"}, "namespace of the allocator Lease (default: $POD_NAMESPACE, else this Pod's namespace)", str(&o.podNamespace, "")},
		{"allocator-lease-name", []string{"vigil_allocator_lease"}, "name of the allocator Lease", str(&o.leaseName, "vigil-allocator")},
	}
}

// resolve fills the Pod namespace from the service-account file and checks
// the identity.
func (o *allocatorOptions) resolve(getenv func(string) string, readFile func(string) ([]byte, error)) error {
	if o.podNamespace == "" {
		o.podNamespace = strings.TrimSpace(getenv("POD_NAMESPACE"))
	}
	if o.podNamespace == "" {
		if b, err := readFile(saNamespaceFile); err == nil {
			o.podNamespace = strings.TrimSpace(string(b))
		}
	}
	switch {
	case o.podName == "":
		return errors.New("the allocator needs POD_NAME (its Lease identity); set it, e.g. from the downward API")
	case o.podNamespace == "":
		return errors.New("the allocator needs POD_NAMESPACE (its Lease namespace): outside a Pod, set it")
	}
	return nil
}

func newAllocatorCommand() *cobra.Command {
	o := &allocatorOptions{}
	var kubeconfig, logLevel string
	table := append(allocatorSettings(o), classSettings(&o.class)...)
	table = append(table, metallbSettings(&o.metallb)...)
	table = append(table,
		setting{"kubeconfig", []string{"k8s_config_file", "KUBECONFIG"}, "kubeconfig path (empty: in-cluster config)", str(&kubeconfig, "")},
		setting{"log-level", []string{"vigil_log_level"}, "debug, info, warn or error", str(&logLevel, "info")},
	)
	cmd := &cobra.Command{
		Use:   "allocator",
		Short: "Run the address allocator alone (one leader at a time)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), table, os.LookupEnv); err != nil {
				return err
			}
			if err := o.resolve(os.Getenv, os.ReadFile); err != nil {
				return err
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("vigil_log_level=%q: %w", logLevel, err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("pod", o.podName)
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return fmt.Errorf("kubernetes config: %w", err)
			}
			return runAllocator(cmd.Context(), o, cfg, nil, log)
		},
	}
	register(cmd.Flags(), table)
	return cmd
}

// allocatorParts are the allocator's election, controller and MetalLB
// source (nil: off).
type allocatorParts struct {
	el  *election.Elector
	ctl *ipam.Controller
	mlb *metallb.Source
}

// newAllocatorParts builds them: the election tells the controller (and
// the MetalLB source, whose Events only the leader records) of leadership.
func newAllocatorParts(o *allocatorOptions, client, leaseClient *kubeclient.Clientset, dyn dynamic.Interface, recorder record.EventRecorder, met poolMetrics, log *slog.Logger) (*allocatorParts, error) {
	a := &allocatorParts{}
	el, err := election.New(election.Config{Identity: o.podName, Instance: instanceID(), Namespace: o.podNamespace},
		leaseClient, func(k election.Key) {
			a.ctl.LeaseChanged(k)
			if a.mlb != nil {
				a.mlb.Recheck() // a new leader tells the problems
			}
		}, log)
	if err != nil {
		return nil, err
	}
	a.el = el
	leading := func() bool { return el.Leading(election.Key{Namespace: o.podNamespace, Name: o.leaseName}) }
	a.mlb = newMetalLB(o.metallb, client, dyn, recorder, log, leading, func() { a.ctl.PoolsChanged() })
	a.ctl, err = ipam.New(ipam.Config{LeaseName: o.leaseName, LeaseNamespace: o.podNamespace, Class: o.class, Sources: poolSources(a.mlb), OnPoolStats: poolStats(met)},
		client, dyn, el, recorder, log)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// runAllocator runs the leader-elected allocator until ctx ends, then
// releases its Lease.
func runAllocator(ctx context.Context, o *allocatorOptions, cfg *rest.Config, met poolMetrics, log *slog.Logger) error {
	client, leaseClient, cfg, err := apiClients(cfg, "vigil-allocator/"+Version, 50, 100)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	recorder, stopEvents := eventRecorder(ctx, client, "vigil-allocator", o.podName)
	defer stopEvents()

	a, err := newAllocatorParts(o, client, leaseClient, dyn, recorder, met, log)
	if err != nil {
		return err
	}
	el, ctl, mlb := a.el, a.ctl, a.mlb

	// The controller campaigns once its caches are filled and again
	// whenever it is not a candidate, so the order the two start in does
	// not matter.
	elCtx, stopEl := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := el.Run(elCtx); err != nil {
			log.Error("allocator election stopped", "err", err)
		}
	}()
	defer func() { stopEl(); wg.Wait() }()
	if mlb != nil {
		wg.Add(1)
		go func() { defer wg.Done(); mlb.Run(elCtx) }()
	}
	err = ctl.Run(ctx)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if rerr := el.ResignAll(rctx); rerr != nil {
		log.Warn("releasing the allocator lease", "err", rerr)
	}
	return err
}

// poolMetrics takes the allocator's pool counts for Prometheus.
type poolMetrics interface{ Pools([]metrics.PoolUsage) }

// poolStats reports the allocator's pool counts to met (nil: nowhere), one
// series per pool and family that has addresses.
func poolStats(met poolMetrics) func(map[string]allocator.PoolStats) {
	if met == nil {
		return nil
	}
	return func(stats map[string]allocator.PoolStats) {
		var out []metrics.PoolUsage
		for pool, s := range stats {
			for _, f := range []struct {
				family string
				c      allocator.Counts
			}{{"ipv4", s.IPv4}, {"ipv6", s.IPv6}} {
				if f.c.Total > 0 {
					out = append(out, metrics.PoolUsage{Pool: pool, Family: f.family, Used: f.c.Used, Free: f.c.Free})
				}
			}
		}
		met.Pools(out)
	}
}
