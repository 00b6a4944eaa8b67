package kube

import (
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Models parses each Service once per resourceVersion and hands out the
// same *Service until the object changes. Safe for concurrent use; the
// returned values must not be modified.
type Models struct {
	class ClassPolicy
	mu    sync.Mutex
	cache map[string]*Service // namespace/name -> last parse
	// resolve gives a host name's addresses (nil: names are not
	// resolved); gen counts Invalidate calls, resolved the parses with
	// their names' addresses added, per key, at that generation.
	resolve  func(name string) []netip.Addr
	gen      uint64
	resolved map[string]resolvedService
}

type resolvedService struct {
	gen  uint64
	from *Service // the parse it was made from
	svc  *Service
}

// Resolve makes Get add the addresses of a Service's host names (from
// resolve, which must not block) to its Addrs.
func (m *Models) Resolve(resolve func(name string) []netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resolve, m.resolved = resolve, map[string]resolvedService{}
}

// Invalidate drops every parse with resolved names (some name's
// addresses changed).
func (m *Models) Invalidate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
}

// withNames returns s with its names' addresses in Addrs; mu held.
func (m *Models) withNames(key string, s *Service) *Service {
	if m.resolve == nil || len(s.Names) == 0 {
		return s
	}
	if r, ok := m.resolved[key]; ok && r.gen == m.gen && r.from == s {
		return r.svc
	}
	cp := *s
	cp.Addrs = slices.Clone(s.Addrs)
	for _, n := range s.Names {
		cp.Addrs = append(cp.Addrs, m.resolve(n)...)
	}
	slices.SortFunc(cp.Addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	cp.Addrs = slices.Compact(cp.Addrs)
	m.resolved[key] = resolvedService{gen: m.gen, from: s, svc: &cp}
	return &cp
}

// NewModels returns an empty cache parsing under class.
func NewModels(class ClassPolicy) *Models {
	return &Models{class: class, cache: map[string]*Service{}}
}

// Class is the policy the cache parses under.
func (m *Models) Class() ClassPolicy { return m.class }

// Get returns the parse of svc, from the cache when its UID and
// resourceVersion have not changed.
func (m *Models) Get(svc *corev1.Service) *Service {
	key := svc.Namespace + "/" + svc.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.withNames(key, m.parsedLocked(key, svc))
}

// Static returns the parse of svc without its host names' addresses (what
// the Service object itself says; it changes only with the object).
func (m *Models) Static(svc *corev1.Service) *Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parsedLocked(svc.Namespace+"/"+svc.Name, svc)
}

// parsedLocked returns the cached parse of svc, parsing it again when its
// UID or resourceVersion changed; mu held.
func (m *Models) parsedLocked(key string, svc *corev1.Service) *Service {
	if s, ok := m.cache[key]; ok && s.UID == svc.UID && s.Version == svc.ResourceVersion && svc.ResourceVersion != "" {
		return s
	}
	s := Parse(svc, m.class)
	m.cache[key] = s
	return s
}

// Forget drops a deleted Service's parse.
func (m *Models) Forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cache, key)
	delete(m.resolved, key)
}
