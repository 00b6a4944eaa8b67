package crdconfig

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// Discovery is what the source needs of discovery (any authenticated
// client may read it: no RBAC rule is needed).
type Discovery interface {
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// Secrets reads the password Secrets of vigil's namespace: a clientset's
// CoreV1().Secrets(namespace).
type Secrets interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
}

// discoveryRetry is how soon discovery is asked again after it failed
// (the API server away), instead of a whole Interval: an agent started
// during an API server outage otherwise went on without the BGP objects up
// to 30 s after the API server was back (the fault campaign found a BGP
// Service announced by L2, then late by BGP).
const discoveryRetry = time.Second

// Options configure a Source.
type Options struct {
	// Namespace is vigil's namespace; password Secrets are read there
	// only (passwordSecret.namespace empty or equal to it).
	Namespace string
	// Interval between two looks at discovery and two reads of the
	// password Secrets; 0: 30s.
	Interval time.Duration
	Clock    clock.Clock  // nil: the wall clock
	Log      *slog.Logger // nil: slog.Default()
	// Recorder gets a Warning Event per bad object; nil: none.
	Recorder record.EventRecorder
	// Writes reports whether this agent writes Events and BGPPeer status
	// now (one writer at a time); nil: always.
	Writes func() bool
	// Sessions gives each node's session with a peer, for BGPPeer
	// status; nil: no sessions are reported (Established stays Unknown).
	// Call Resync when they change.
	Sessions Sessions
	// OnChange is called from Run's goroutine after Config changed (and
	// once when it is first synced); it must only enqueue.
	OnChange func()
}

// Source turns the vigil.io BGP objects into an lbconfig.Config.
type Source struct {
	disco   Discovery
	dyn     dynamic.Interface
	secrets Secrets
	o       Options
	kick    chan struct{}

	// Run's goroutine only.
	watches   map[schema.GroupVersionResource]*watch
	served    string              // what discovery last said, for the log
	passwords map[string]password // last good password per Secret
	reported  map[string]string   // object → problem last reported
	// wrote is, per BGPPeer (objectKey), the status last written and the cached
	// version it was written over: a rebuild that still sees that version
	// (the informer has not brought the write back yet) does not write
	// the same status again.
	wrote map[string]statusWrite

	logMu  sync.Mutex
	logged map[string]string // topic → message last logged

	mu     sync.Mutex
	cfg    lbconfig.Config
	synced bool
}

// password is a password read from a Secret, and when.
type password struct {
	value string
	at    time.Time
}

// New returns a Source; Run runs it.
func New(disco Discovery, dyn dynamic.Interface, secrets Secrets, o Options) *Source {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Source{
		disco: disco, dyn: dyn, secrets: secrets, o: o, kick: make(chan struct{}, 1),
		watches: map[schema.GroupVersionResource]*watch{}, passwords: map[string]password{},
		reported: map[string]string{}, wrote: map[string]statusWrite{}, logged: map[string]string{}, served: notLooked,
	}
}

// notLooked is Source.served before discovery answered.
const notLooked = "(not looked)"

// Config returns the configuration from the objects (Speaker is left
// zero: it comes from the agent's settings). Before Synced, it is empty.
// It is shared: callers must not modify it.
func (s *Source) Config() lbconfig.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Synced reports whether Config says something: discovery answered (or
// failed) and the objects of every installed CRD are listed.
func (s *Source) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Run follows the CRDs and their objects until ctx ends.
func (s *Source) Run(ctx context.Context) {
	t := s.o.Clock.NewTimer()
	defer t.Stop()
	defer s.stopAll()
	var due time.Time
	for {
		if now := s.o.Clock.Now(); !now.Before(due) {
			due = now.Add(s.o.Interval)
			if !s.discover(ctx) {
				due = now.Add(min(s.o.Interval, discoveryRetry))
			}
		}
		s.rebuild(ctx)
		t.Reset(due)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-s.kick:
		}
	}
}

// enqueue asks Run to rebuild.
func (s *Source) enqueue() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// rebuild converts the objects, reports the bad ones, and publishes the
// configuration once every informer has synced.
func (s *Source) rebuild(ctx context.Context) {
	lists, ok := s.lists()
	if !ok {
		return
	}
	cfg, problems := s.build(ctx, lists)
	s.report(ctx, lists, problems)
	s.publish(cfg)
}

// publish stores cfg and calls OnChange when it changed.
func (s *Source) publish(cfg lbconfig.Config) {
	s.mu.Lock()
	changed := !s.synced || !reflect.DeepEqual(cfg, s.cfg)
	s.cfg, s.synced = cfg, true
	s.mu.Unlock()
	if changed && s.o.OnChange != nil {
		s.o.OnChange()
	}
}

// build converts every object; problems holds each object's error (by
// objectKey), nil when it is used.
func (s *Source) build(ctx context.Context, lists map[schema.GroupVersionResource][]*unstructured.Unstructured) (lbconfig.Config, map[string]error) {
	problems := map[string]error{}
	profiles := map[string]*lbconfig.BFD{}
	for _, obj := range lists[BFDProfiles] {
		b, err := bfdFrom(obj)
		if problems[objectKey(obj)] = err; err == nil {
			profiles[obj.GetName()] = b
		}
	}
	refs := peerRefs{profiles: profiles, password: func(ref corev1.SecretReference) (string, error) { return s.readPassword(ctx, ref) }}
	var cfg lbconfig.Config
	for _, obj := range lists[BGPPeers] {
		p, err := peerFrom(obj, refs)
		if problems[objectKey(obj)] = err; err == nil {
			cfg.Peers = append(cfg.Peers, p)
		}
	}
	for _, obj := range lists[BGPAdvertisements] {
		a, err := bgpAdvFrom(obj)
		if problems[objectKey(obj)] = err; err == nil {
			cfg.BGPAdvertisements = append(cfg.BGPAdvertisements, a)
		}
	}
	for _, obj := range lists[L2Advertisements] {
		a, err := l2AdvFrom(obj)
		if problems[objectKey(obj)] = err; err == nil {
			cfg.L2Advertisements = append(cfg.L2Advertisements, a)
		}
	}
	return cfg, problems
}

// objectKey names an object in logs and maps: "bgppeers/tor1".
func objectKey(obj *unstructured.Unstructured) string {
	return strings.ToLower(obj.GetKind()) + "s/" + obj.GetName()
}

// readPassword reads a password Secret in vigil's namespace, at most once
// per interval (rebuilds follow every change of the objects). When the API
// server does not answer, the last password read is used (a peer does not
// go down with the API server).
func (s *Source) readPassword(ctx context.Context, ref corev1.SecretReference) (string, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = s.o.Namespace
	}
	if ns != s.o.Namespace {
		return "", fieldErrorf("passwordSecret.namespace", "%q: vigil reads password Secrets only in its own namespace %q", ns, s.o.Namespace)
	}
	key, now := ns+"/"+ref.Name, s.o.Clock.Now()
	if pw, ok := s.passwords[key]; ok && now.Sub(pw.at) < s.o.Interval {
		return pw.value, nil
	}
	sec, err := s.secrets.Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		delete(s.passwords, key)
		return "", fieldErrorf("passwordSecret", "Secret %s not found", key)
	case apierrors.IsForbidden(err):
		return "", fieldErrorf("passwordSecret", "cannot read Secret %s (RBAC: get secrets in %s): %v", key, ns, err)
	case err != nil:
		if pw, ok := s.passwords[key]; ok {
			return pw.value, nil
		}
		return "", transient(fmt.Errorf("read Secret %s: %w", key, err))
	}
	pw, err := passwordFrom(sec)
	if err != nil {
		delete(s.passwords, key)
		return "", err
	}
	s.passwords[key] = password{value: pw, at: now}
	return pw, nil
}

// logOnce logs a warning under topic unless it is the last thing logged
// there; the arguments count, so a new error is logged.
func (s *Source) logOnce(topic, msg string, args ...any) {
	line := fmt.Sprint(append([]any{msg}, args...)...)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.logged[topic] == line {
		return
	}
	s.logged[topic] = line
	s.o.Log.Warn(msg, args...)
}

func (s *Source) clearLog(topic string) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	delete(s.logged, topic)
}

func sortedByName(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	slices.SortFunc(objs, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	return objs
}
