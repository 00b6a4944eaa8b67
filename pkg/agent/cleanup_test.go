package agent

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/pkg/election"
)

type fakeJanitor struct{ deleted []election.Key }

func (j *fakeJanitor) DeleteUnheld(_ context.Context, k election.Key) error {
	j.deleted = append(j.deleted, k)
	return nil
}

// The Lease of a deleted Service is cleaned up once no other node holds it;
// a live Service's Lease, or one another node still holds, is left alone,
// and so is the Lease of a Service only this node's cache has not shown
// yet (the API server still has it). A Service whose Lease the elector's
// cache does not hold costs no API request.
func TestDeletedServiceLeaseCleanedUp(t *testing.T) {
	const key = "default/web"
	for _, tt := range []struct {
		name        string
		remove      bool
		cacheOnly   bool // gone from this node's cache only, not from the API
		heldByOther bool
		unseen      bool // its Lease is not in the elector's cache
		want        []election.Key
	}{
		{name: "deleted, nobody holds it", remove: true, want: []election.Key{lease(key)}},
		{name: "deleted, another node still holds it", remove: true, heldByOther: true},
		{name: "not deleted", remove: false},
		{name: "missing from a lagging cache only", remove: true, cacheOnly: true},
		{name: "deleted, its Lease not in the cache", remove: true, unseen: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
			j := &fakeJanitor{}
			f.a.janitor = j
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			switch {
			case tt.remove && tt.cacheOnly:
				if err := f.a.svcIndex.Delete(f.get(key)); err != nil {
					t.Fatal(err)
				}
			case tt.remove:
				f.remove(key)
			}
			f.el.leading[lease(key)] = false
			f.el.heldByOther[lease(key)] = tt.heldByOther
			f.el.unseen[lease(key)] = tt.unseen
			f.client.ClearActions()
			f.mustSync(key)
			if tt.unseen && slices.ContainsFunc(f.client.Actions(), func(a k8stesting.Action) bool { return a.Matches("get", "services") }) {
				t.Error("the API server was asked about a Service whose Lease this node has never seen")
			}
			if diff := cmp.Diff(tt.want, j.deleted); diff != "" {
				t.Errorf("deleted Leases (-want +got):\n%s", diff)
			}
		})
	}
}
