package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestAllocatorIdentity(t *testing.T) {
	noFile := func(string) ([]byte, error) { return nil, errors.New("not in a pod") }
	inPod := func(string) ([]byte, error) { return []byte("vigil-system\n"), nil }
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		name    string
		opts    allocatorOptions
		getenv  func(string) string
		read    func(string) ([]byte, error)
		wantNS  string
		wantErr string
	}{
		{"outside a pod, nothing set", allocatorOptions{}, env(nil), noFile, "", "needs POD_NAME"},
		{"outside a pod, no namespace", allocatorOptions{podName: "a"}, env(nil), noFile, "", "needs POD_NAMESPACE"},
		{"POD_NAMESPACE", allocatorOptions{podName: "a"}, env(map[string]string{"POD_NAMESPACE": "ns1"}), noFile, "ns1", ""},
		{"service-account file", allocatorOptions{podName: "a"}, env(nil), inPod, "vigil-system", ""},
		{"flag wins", allocatorOptions{podName: "a", podNamespace: "flag"}, env(map[string]string{"POD_NAMESPACE": "ns1"}), inPod, "flag", ""},
	}
	for _, tt := range tests {
		o := tt.opts
		err := o.resolve(tt.getenv, tt.read)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || o.podNamespace != tt.wantNS {
			t.Errorf("%s: namespace %q, err %v; want %q", tt.name, o.podNamespace, err, tt.wantNS)
		}
	}
}
