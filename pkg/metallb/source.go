package metallb

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// Discovery is what the source needs of discovery.
type Discovery interface {
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// Getter reads one object of MetalLB's namespace by name: a clientset's
// CoreV1().ConfigMaps(ns) or CoreV1().Secrets(ns).
type Getter[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
}

// discoveryRetry is how soon discovery is asked again after it failed
// (the API server away), instead of a whole Interval: an agent started
// during an API server outage otherwise went on without MetalLB's objects
// up to 30 s after the API server was back.
const discoveryRetry = time.Second

// Options configure a Source.
type Options struct {
	Namespace string        // MetalLB's namespace; "": metallb-system
	Interval  time.Duration // between looks at discovery; 0: 30s
	Clock     clock.Clock   // nil: the wall clock
	Log       *slog.Logger  // nil: slog.Default()
	// Recorder gets a Warning Event per problem while Writes says so
	// (one writer at a time); nil Writes: never (problems are logged).
	Recorder record.EventRecorder
	Writes   func() bool
	// OnChange is called from Run's goroutine after the configuration
	// changed (and when it is first synced); it must only enqueue.
	OnChange func()
	// Webhooks, when set, lets the writer look every Interval for
	// MetalLB's validating webhook left behind with no endpoint.
	Webhooks Webhooks
}

// Source follows MetalLB's objects and ConfigMap.
type Source struct {
	disco   Discovery
	dyn     dynamic.Interface
	secrets Getter[*corev1.Secret]
	o       Options
	kick    chan struct{}

	// Run's goroutine only.
	watches   map[schema.GroupVersionResource]*watch
	served    string
	passwords map[string]string // last good password per Secret
	loggedObj map[Ref]string    // object -> problems last logged
	evented   map[Ref]string    // object -> problems last told by Events
	// webhooksSaid: leftover webhooks already told (configuration UID/name).
	webhooksSaid map[string]bool

	logMu  sync.Mutex
	logged map[string]string

	mu     sync.Mutex
	res    Result
	synced bool
}

// New returns a source; Run follows the objects.
func New(disco Discovery, dyn dynamic.Interface, secrets Getter[*corev1.Secret], o Options) *Source {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Log = o.Log.With("component", "metallb-config", "namespace", o.Namespace)
	return &Source{disco: disco, dyn: dyn, secrets: secrets, o: o, kick: make(chan struct{}, 1),
		watches: map[schema.GroupVersionResource]*watch{}, passwords: map[string]string{},
		loggedObj: map[Ref]string{}, evented: map[Ref]string{}, webhooksSaid: map[string]bool{}, logged: map[string]string{}, served: notLooked}
}

const notLooked = "(not looked)"

// Config is the announcement configuration from MetalLB's objects (empty
// before Synced). Callers must not modify it.
func (s *Source) Config() lbconfig.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res.Config
}

// Pools are MetalLB's address pools (none before Synced).
func (s *Source) Pools() []Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res.Pools
}

// Synced reports whether discovery answered and the objects of every
// served resource are listed.
func (s *Source) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Run follows the CRDs, their objects and the ConfigMap until ctx ends.
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
			s.checkWebhooks(ctx)
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

// Recheck asks Run to convert and report again (this process may have
// become the one that records Events).
func (s *Source) Recheck() { s.enqueue() }

func (s *Source) enqueue() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// rebuild converts everything, reports problems and publishes.
func (s *Source) rebuild(ctx context.Context) {
	objs, cm, ok := s.lists()
	if !ok || s.served == notLooked {
		return
	}
	res := Convert(objs, func(ref corev1.SecretReference) (string, error) { return s.password(ctx, ref) })
	if cm != nil {
		res = res.Merge(s.legacy(cm))
	}
	s.report(res.Problems)
	s.publish(res)
}

// legacy converts the ConfigMap's config key.
func (s *Source) legacy(cm *unstructured.Unstructured) Result {
	ref := refOf(cm)
	data, _, _ := unstructured.NestedString(cm.Object, "data", ConfigMapKey)
	if strings.TrimSpace(data) == "" {
		return Result{Problems: []Problem{{Object: ref, LeftOut: true, Err: crdconfig.FieldError("data."+ConfigMapKey, "missing or empty: nothing read from this ConfigMap")}}}
	}
	r, err := ParseLegacy([]byte(data), ref)
	if err != nil {
		return Result{Problems: []Problem{{Object: ref, Err: err, LeftOut: true}}}
	}
	return r
}

func (s *Source) publish(res Result) {
	s.mu.Lock()
	changed := !s.synced || !reflect.DeepEqual(res.Pools, s.res.Pools) || !reflect.DeepEqual(res.Config, s.res.Config)
	s.res, s.synced = res, true
	s.mu.Unlock()
	if changed {
		s.o.Log.Info("MetalLB configuration", "pools", len(res.Pools), "peers", len(res.Config.Peers),
			"l2Advertisements", len(res.Config.L2Advertisements), "bgpAdvertisements", len(res.Config.BGPAdvertisements), "problems", len(res.Problems))
		if s.o.OnChange != nil {
			s.o.OnChange()
		}
	}
}

// password reads a BGPPeer's Secret in MetalLB's namespace; when the API
// server does not answer, the last password read is used.
func (s *Source) password(ctx context.Context, ref corev1.SecretReference) (string, error) {
	if ref.Namespace != "" && ref.Namespace != s.o.Namespace {
		return "", crdconfig.FieldError("passwordSecret.namespace", "%q: MetalLB reads password Secrets only in its own namespace %q", ref.Namespace, s.o.Namespace)
	}
	sec, err := s.secrets.Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		delete(s.passwords, ref.Name)
		return "", crdconfig.FieldError("passwordSecret", "Secret %s/%s not found", s.o.Namespace, ref.Name)
	case apierrors.IsForbidden(err):
		return "", crdconfig.FieldError("passwordSecret", "cannot read Secret %s/%s (RBAC: get secrets in %s): %v", s.o.Namespace, ref.Name, s.o.Namespace, err)
	case err != nil:
		if pw, ok := s.passwords[ref.Name]; ok {
			return pw, nil
		}
		return "", crdconfig.Transient(fmt.Errorf("read Secret %s/%s: %w", s.o.Namespace, ref.Name, err))
	}
	pw := string(sec.Data[corev1.BasicAuthPasswordKey])
	if sec.Type != corev1.SecretTypeBasicAuth || pw == "" {
		return "", crdconfig.FieldError("passwordSecret", "Secret %s/%s must be of type %s with a non-empty key %q", s.o.Namespace, ref.Name, corev1.SecretTypeBasicAuth, corev1.BasicAuthPasswordKey)
	}
	s.passwords[ref.Name] = pw
	return pw, nil
}

// report logs each object's problems when they change, and records a
// Warning Event per problem once while this process writes. Transient
// problems (the API server did not answer) are only logged.
func (s *Source) report(problems []Problem) {
	byObj := map[Ref][]Problem{}
	for _, p := range problems {
		byObj[p.Object] = append(byObj[p.Object], p)
	}
	writes := s.o.Writes != nil && s.o.Writes() && s.o.Recorder != nil
	for ref, ps := range byObj {
		var msgs []string
		for _, p := range ps {
			msgs = append(msgs, p.Err.Error())
		}
		told := strings.Join(msgs, "; ")
		logNow, eventNow := s.loggedObj[ref] != told, writes && s.evented[ref] != told
		s.loggedObj[ref] = told
		if eventNow {
			s.evented[ref] = told
		}
		for _, p := range ps {
			s.tell(p, logNow, eventNow && !crdconfig.IsTransient(p.Err))
		}
	}
	for _, m := range []map[Ref]string{s.loggedObj, s.evented} {
		for ref := range m {
			if _, ok := byObj[ref]; !ok {
				delete(m, ref)
			}
		}
	}
}

// tell logs one problem and records its Event.
func (s *Source) tell(p Problem, log, event bool) {
	what := "used, with a warning"
	if p.LeftOut {
		what = "left out"
	}
	if log {
		s.o.Log.Warn("MetalLB object "+what, "object", p.Object.Kind+"/"+p.Object.Name, "err", p.Err)
	}
	if !event {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: p.Object.APIVersion, Kind: p.Object.Kind, Namespace: p.Object.Namespace, Name: p.Object.Name, UID: types.UID(p.Object.UID)}
	s.o.Recorder.Eventf(ref, corev1.EventTypeWarning, p.Reason(), "%s %s %s: %v", p.Object.Kind, p.Object.Name, what, p.Err)
}

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
