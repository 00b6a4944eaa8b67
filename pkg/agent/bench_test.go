package agent

import (
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/client-go/tools/record"
)

// BenchmarkSyncLeadershipChange is one sync of a Service whose Lease this
// node just took or lost, on a node that knows n Services and holds a
// third of them: the work a takeover repeats once per Service (a crash of
// a node holding a third of 1,000 Services hands ~170 to each survivor).
// It must not grow with n.
func BenchmarkSyncLeadershipChange(b *testing.B) {
	for _, n := range []int{100, 1000, 3000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			f := newFixture(b, defaultConfig())
			f.a.recorder = &record.FakeRecorder{} // no Events kept
			keys := make([]string, n)
			for i := range keys {
				ip := netip.AddrFrom4([4]byte{198, 18, byte(4 + i/250), byte(1 + i%250)})
				f.apply(service(fmt.Sprintf("svc%04d", i), ip.String()))
				keys[i] = "default/" + fmt.Sprintf("svc%04d", i)
				f.el.leading[lease(keys[i])] = i%3 == 0
				f.el.heldByOther[lease(keys[i])] = i%3 != 0
			}
			f.mustSync(keys...)
			f.log.take()
			b.ResetTimer()
			for i := range b.N {
				k := keys[(3*i+1)%n] // one held elsewhere, or taken in the last round
				f.el.leading[lease(k)] = !f.el.leading[lease(k)]
				f.el.heldByOther[lease(k)] = !f.el.leading[lease(k)]
				if err := f.sync(k); err != nil {
					b.Fatal(err)
				}
				if i%1000 == 999 {
					f.log.take()
				}
			}
		})
	}
}
