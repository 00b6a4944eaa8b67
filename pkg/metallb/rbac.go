package metallb

import (
	_ "embed"

	rbacv1 "k8s.io/api/rbac/v1"
)

// ClusterRoleRules are what the source needs: read MetalLB's objects
// (never write them, nor their CRDs), the legacy ConfigMap, which is named
// "config" (only ConfigMaps of that name), and the validating webhook
// configurations (to tell of MetalLB's leftover webhook). A BGPPeer's passwordSecret
// needs get on Secrets in MetalLB's namespace too: a Role there, which the
// operator grants when a peer uses one (docs/migrate-metallb.md).
func ClusterRoleRules() []rbacv1.PolicyRule {
	var res []string
	for _, r := range Resources {
		res = append(res, r.Resource)
	}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{V1beta1.Group}, Resources: res, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{ConfigMapName}, Verbs: []string{"list", "watch"}},
		// MetalLB's validating webhook left behind (its endpoints: the
		// EndpointSlices the agent reads anyway).
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: []string{"list"}},
	}
}

// CRDs is the YAML of MetalLB's CRDs as vigil serves them, for clusters
// without MetalLB (`vigil manifest metallb-crds`, manifests/metallb-crds.yaml).
//
//go:embed crds.yaml
var CRDs []byte
