package kube_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
)

func TestSlim(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	out, err := kube.Slim(svc)
	if err != nil || out.(*corev1.Service).ManagedFields != nil || out.(*corev1.Service).Name != "web" {
		t.Errorf("Slim(service) = %+v, %v", out, err)
	}
	n := &corev1.Node{Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}}}
	if out, _ := kube.Slim(n); out.(*corev1.Node).Status.Images != nil {
		t.Error("node images kept")
	}
	if out, err := kube.Slim("not an object"); err != nil || out != "not an object" {
		t.Errorf("Slim(non-object) = %v, %v", out, err)
	}
}
