package kube

// ClassPolicy decides, from spec.loadBalancerClass, which Services vigil
// handles. The agents and the allocator use the same policy, so an address
// is only ever allocated for a Service some agent will announce.
//
// The rules, in order:
//  1. A Service whose class is Name is handled.
//  2. With Only (kube-vip's lb_class_only), nothing else is.
//  3. A Service with no class, or with class "default" (kube-router's name
//     for "no class in particular"), is handled when Legacy is set
//     (kube-vip's lb_class_legacy_handling, kube-router's
//     --loadbalancer-default-class; on by default).
//  4. Any other class belongs to another controller.
type ClassPolicy struct {
	Name   string // vigil's class (lb_class_name)
	Legacy bool   // handle Services with no class or class "default"
	Only   bool   // handle only Services whose class is Name
}

// DefaultClassAlias is the class kube-router treats like no class.
const DefaultClassAlias = "default"

// Handles reports whether a Service of this class (nil: none) is vigil's.
func (p ClassPolicy) Handles(class *string) bool {
	if class != nil && *class == p.Name {
		return true
	}
	if p.Only || !p.Legacy {
		return false
	}
	return class == nil || *class == DefaultClassAlias
}
