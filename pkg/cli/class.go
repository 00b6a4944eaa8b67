package cli

import "github.com/vigil-lb/vigil/pkg/kube"

// classSettings are the load balancer class settings, one set for the
// agents and the allocator (kube.ClassPolicy): an address is allocated only
// for a Service some agent announces. svc_allocator_default_class, the
// allocator's older name for legacy handling, is still read.
func classSettings(p *kube.ClassPolicy) []setting {
	return []setting{
		{"lb-class-name", []string{"lb_class_name"}, "the load balancer class vigil answers to", str(&p.Name, kube.DefaultClass)},
		{"lb-class-only", []string{"lb_class_only"}, "handle only Services whose loadBalancerClass is --lb-class-name", boolean(&p.Only, false)},
		{"lb-class-legacy-handling", []string{"lb_class_legacy_handling", "svc_allocator_default_class"},
			"also handle Services with no loadBalancerClass or class \"default\"", boolean(&p.Legacy, true)},
	}
}
