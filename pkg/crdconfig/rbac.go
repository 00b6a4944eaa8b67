package crdconfig

import rbacv1 "k8s.io/api/rbac/v1"

// ClusterRoleRules are what the source needs cluster-wide: read the four
// kinds, write BGPPeer status. (Events: create/patch events, which the
// agent's ClusterRole has already; Events about these cluster-scoped
// objects go to the default namespace.) Discovery needs no rule.
func ClusterRoleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{GroupVersion.Group}, Resources: []string{BGPPeers.Resource, BGPAdvertisements.Resource, BFDProfiles.Resource, L2Advertisements.Resource},
			Verbs: []string{"list", "watch"}},
		{APIGroups: []string{GroupVersion.Group}, Resources: []string{BGPPeers.Resource + "/status"}, Verbs: []string{"update"}},
	}
}

// SecretRoleRules are what the source needs in vigil's own namespace (a
// Role and RoleBinding there, not cluster-wide): get the password Secrets
// BGPPeers name. Only get: no list or watch of Secrets.
func SecretRoleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}
}
