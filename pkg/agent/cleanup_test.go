package agent

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/election"
)

type fakeJanitor struct{ deleted []election.Key }

func (j *fakeJanitor) DeleteUnheld(_ context.Context, k election.Key) error {
	j.deleted = append(j.deleted, k)
	return nil
}

// The Lease of a deleted Service is cleaned up once no other node holds it;
// a live Service's Lease, or one another node still holds, is left alone.
func TestDeletedServiceLeaseCleanedUp(t *testing.T) {
	const key = "default/web"
	for _, tt := range []struct {
		name        string
		remove      bool
		heldByOther bool
		want        []election.Key
	}{
		{name: "deleted, nobody holds it", remove: true, want: []election.Key{lease(key)}},
		{name: "deleted, another node still holds it", remove: true, heldByOther: true},
		{name: "not deleted", remove: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
			j := &fakeJanitor{}
			f.a.janitor = j
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			if tt.remove {
				f.remove(key)
			}
			f.el.leading[lease(key)] = false
			f.el.heldByOther[lease(key)] = tt.heldByOther
			f.mustSync(key)
			if diff := cmp.Diff(tt.want, j.deleted); diff != "" {
				t.Errorf("deleted Leases (-want +got):\n%s", diff)
			}
		})
	}
}
