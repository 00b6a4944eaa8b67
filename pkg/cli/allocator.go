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

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/ipam"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// saNamespaceFile holds the Pod's namespace inside a Pod.
const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// allocatorOptions is what the allocator reads (standalone or in the
// manager).
type allocatorOptions struct {
	podName      string
	podNamespace string
	leaseName    string
	className    string
	defaultClass bool
}

func allocatorSettings(o *allocatorOptions) []setting {
	return []setting{
		{"pod-name", []string{"POD_NAME"}, "allocator identity: the holder of its Lease", str(&o.podName, "")},
		{"pod-namespace", []string{"vigil_allocator_namespace"}, "namespace of the allocator Lease (default: $POD_NAMESPACE, else this Pod's namespace)", str(&o.podNamespace, "")},
		{"allocator-lease-name", []string{"vigil_allocator_lease"}, "name of the allocator Lease", str(&o.leaseName, "vigil-allocator")},
		{"loadbalancer-default-class", []string{"svc_allocator_default_class"}, "also allocate for Services with no class or class \"default\"", boolean(&o.defaultClass, true)},
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
	table := append(allocatorSettings(o),
		setting{"kubeconfig", []string{"k8s_config_file", "KUBECONFIG"}, "kubeconfig path (empty: in-cluster config)", str(&kubeconfig, "")},
		setting{"lb-class-name", []string{"lb_class_name"}, "vigil's load balancer class", str(&o.className, kube.DefaultClass)},
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
			return runAllocator(cmd.Context(), o, cfg, log)
		},
	}
	register(cmd.Flags(), table)
	return cmd
}

// runAllocator runs the leader-elected allocator until ctx ends, then
// releases its Lease.
func runAllocator(ctx context.Context, o *allocatorOptions, cfg *rest.Config, log *slog.Logger) error {
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

	var ctl *ipam.Controller
	el, err := election.New(election.Config{Identity: o.podName, Instance: instanceID(), Namespace: o.podNamespace},
		leaseClient, func(k election.Key) { ctl.LeaseChanged(k) }, log)
	if err != nil {
		return err
	}
	ctl = ipam.New(ipam.Config{
		LeaseName: o.leaseName, LeaseNamespace: o.podNamespace,
		ClassName: o.className, DefaultClass: o.defaultClass,
	}, client, dyn, el, recorder, log)

	elCtx, stopEl := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = el.Run(elCtx) }()
	defer func() { stopEl(); wg.Wait() }()
	err = ctl.Run(ctx)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_ = el.ResignAll(rctx)
	return err
}
