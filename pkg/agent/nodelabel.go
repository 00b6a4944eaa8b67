package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/workqueue"
)

// NodeLabelPrefix is the prefix of the labels kube-vip's
// enable_node_labeling puts on the node announcing a Service:
// service-provided.kube-vip.io/<name>.<namespace>=<addresses>.
const NodeLabelPrefix = "service-provided.kube-vip.io/"

// labeler keeps this node's service-provided labels equal to the Services
// it announces. sync says what it wants (want); its own worker patches the
// Node, level-triggered against what the Node informer shows, so a slow
// API never delays a withdrawal and labels left by a crash are removed.
type labeler struct {
	mu    sync.Mutex
	want  map[string]string // label key -> value, for the Services announced here
	queue workqueue.TypedRateLimitingInterface[string]
}

func newLabeler() *labeler {
	return &labeler{want: map[string]string{}, queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
}

// set records whether the Service key is announced here, and with which
// addresses (none: not announced).
func (l *labeler) set(key string, addrs []netip.Addr) {
	k := NodeLabelKey(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	v, had := l.want[k]
	switch {
	case len(addrs) == 0 && !had:
		return
	case len(addrs) == 0:
		delete(l.want, k)
	default:
		if nv := NodeLabelValue(addrs); !had || nv != v {
			l.want[k] = nv
		} else {
			return
		}
	}
	l.queue.Add("node")
}

// wanted returns a copy of the labels wanted.
func (l *labeler) wanted() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.want))
	for k, v := range l.want {
		out[k] = v
	}
	return out
}

// NodeLabelKey is the label of a Service (namespace/name) on the node
// announcing it: service-provided.kube-vip.io/<name>.<namespace>, the name
// part shortened with a hash when longer than a label name may be.
func NodeLabelKey(key string) string {
	ns, name, _ := strings.Cut(key, "/")
	n := name + "." + ns
	if len(n) > validation.LabelValueMaxLength {
		sum := sha256.Sum256([]byte(key))
		n = strings.TrimRight(n[:validation.LabelValueMaxLength-9], ".-_") + "-" + hex.EncodeToString(sum[:4])
	}
	return NodeLabelPrefix + n
}

// NodeLabelValue is the label value for a Service's addresses: joined by
// "_", with IPv6 colons as "-" (a label value allows neither ":" nor ","),
// as many whole addresses as fit in 63 characters.
func NodeLabelValue(addrs []netip.Addr) string {
	parts := make([]string, 0, len(addrs))
	for _, a := range addrs {
		parts = append(parts, strings.ReplaceAll(a.String(), ":", "-"))
	}
	for ; len(parts) > 0; parts = parts[:len(parts)-1] {
		v := strings.Join(parts, "_")
		if len(validation.IsValidLabelValue(v)) == 0 {
			return v
		}
	}
	return ""
}

// processLabels is the labeler's worker: one patch bringing the Node's
// service-provided labels to what is wanted.
func (a *Agent) processLabels(ctx context.Context) bool {
	key, quit := a.labels.queue.Get()
	if quit {
		return false
	}
	defer a.labels.queue.Done(key)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.patchLabels(wctx, a.labels.wanted()); err != nil {
		a.log.Warn("node label patch failed, will retry", "err", err)
		a.labels.queue.AddRateLimited(key)
		return true
	}
	a.labels.queue.Forget(key)
	return true
}

// patchLabels makes this node's service-provided labels exactly want (a
// merge patch of the difference; nothing when there is none). A Node this
// agent cannot see is not patched.
func (a *Agent) patchLabels(ctx context.Context, want map[string]string) error {
	node, err := a.nodes.Get(a.cfg.NodeName)
	if err != nil {
		return nil //nolint:nilerr // no Node object: nothing to label
	}
	change := map[string]any{}
	for k, v := range node.Labels {
		if !strings.HasPrefix(k, NodeLabelPrefix) {
			continue
		}
		if w, ok := want[k]; !ok {
			change[k] = nil
		} else if w != v {
			change[k] = w
		}
	}
	for k, v := range want {
		if _, ok := node.Labels[k]; !ok {
			change[k] = v
		}
	}
	if len(change) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": change}})
	if err != nil {
		return fmt.Errorf("node labels: %w", err)
	}
	if _, err := a.client.Nodes().Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("node labels: %w", err)
	}
	return nil
}

// label tells the labeler what this node announces for a Service.
func (a *Agent) label(key string, in statusIntent) {
	if a.labels == nil {
		return
	}
	var addrs []netip.Addr
	if in.up {
		addrs = in.addrs
	}
	a.labels.set(key, addrs)
}

// unlabel removes every service-provided label from this node (shutdown,
// after the VIPs are withdrawn).
func (a *Agent) unlabel() error {
	if a.labels == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.patchLabels(ctx, nil)
}
