package crdconfig

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// crdDocs reads the embedded CRDs, by plural.
func crdDocs(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range bytes.Split(CRDs, []byte("\n---\n")) {
		var m map[string]any
		if err := yaml.UnmarshalStrict(doc, &m); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		out[dig(m, "spec", "names", "plural").(string)] = m
	}
	return out
}

// dig walks maps (string keys) and lists (int keys).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestCRDNames(t *testing.T) {
	docs := crdDocs(t)
	want := map[string]string{"bgppeers": "BGPPeer", "bgpadvertisements": "BGPAdvertisement", "bfdprofiles": "BFDProfile", "l2advertisements": "L2Advertisement"}
	if len(docs) != len(want) {
		t.Fatalf("%d CRDs, want %d", len(docs), len(want))
	}
	shortNames := map[string]bool{}
	for _, r := range resources {
		d, ok := docs[r.Resource]
		if !ok {
			t.Fatalf("no CRD for %s", r.Resource)
		}
		checks := map[string][2]any{
			"name":    {dig(d, "metadata", "name"), r.Resource + ".vigil.io"},
			"group":   {dig(d, "spec", "group"), "vigil.io"},
			"kind":    {dig(d, "spec", "names", "kind"), want[r.Resource]},
			"version": {dig(d, "spec", "versions", 0, "name"), "v1alpha1"},
			"scope":   {dig(d, "spec", "scope"), "Cluster"},
		}
		for what, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s: %s %v, want %v", r.Resource, what, c[0], c[1])
			}
		}
		for _, s := range dig(d, "spec", "names", "shortNames").([]any) {
			if shortNames[s.(string)] || !strings.HasPrefix(s.(string), "v") {
				t.Errorf("%s: short name %v repeated or not vigil's own (v...)", r.Resource, s)
			}
			shortNames[s.(string)] = true
		}
	}
	if dig(docs["bgppeers"], "spec", "versions", 0, "subresources", "status") == nil {
		t.Error("BGPPeer has no status subresource")
	}
}

// Structural schemas: every node has a type, every object lists its
// properties (or preserves unknown fields).
func TestCRDSchemasAreStructural(t *testing.T) {
	for name, d := range crdDocs(t) {
		schema := dig(d, "spec", "versions", 0, "schema", "openAPIV3Schema")
		for _, p := range structuralProblems("", schema) {
			t.Errorf("%s: %s", name, p)
		}
	}
}

func structuralProblems(path string, v any) []string {
	s, ok := v.(map[string]any)
	if !ok {
		return []string{path + ": not a schema"}
	}
	var out []string
	switch s["type"] {
	case "object":
		props, _ := s["properties"].(map[string]any)
		if props == nil && s["additionalProperties"] == nil && s["x-kubernetes-preserve-unknown-fields"] != true {
			out = append(out, path+": object without properties")
		}
		for k, p := range props {
			out = append(out, structuralProblems(path+"."+k, p)...)
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			out = append(out, structuralProblems(path+".*", ap)...)
		}
	case "array":
		out = append(out, structuralProblems(path+"[]", s["items"])...)
	case "string", "integer", "boolean", "number":
	default:
		out = append(out, fmt.Sprintf("%s: type %v", path, s["type"]))
	}
	return out
}

// The converter reads exactly the fields the schema has: a renamed field on
// either side would otherwise be pruned or read as empty.
func TestCRDFieldsAreTheConvertersFields(t *testing.T) {
	docs := crdDocs(t)
	for plural, spec := range map[string]any{"bgppeers": peerSpec{}, "bgpadvertisements": bgpAdvSpec{}, "bfdprofiles": bfdSpec{}, "l2advertisements": l2AdvSpec{}} {
		props, _ := dig(docs[plural], "spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "properties").(map[string]any)
		var schemaFields, refused []string
		for k, p := range props {
			if strings.Contains(fmt.Sprint(dig(p, "description")), "MetalLB only; refused") {
				refused = append(refused, k)
				continue
			}
			schemaFields = append(schemaFields, k)
		}
		var goFields []string
		rt := reflect.TypeOf(spec)
		for i := range rt.NumField() {
			goFields = append(goFields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		slices.Sort(schemaFields)
		slices.Sort(goFields)
		if !slices.Equal(schemaFields, goFields) {
			t.Errorf("%s: schema fields %v, converter fields %v", plural, schemaFields, goFields)
		}
		for _, k := range refused {
			if !strings.Contains(fmt.Sprint(dig(docs[plural], "spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "x-kubernetes-validations")), k) {
				t.Errorf("%s: %s is described as refused but no rule refuses it", plural, k)
			}
		}
	}
}
