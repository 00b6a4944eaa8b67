{{/* Labels every object carries (the same as `vigil manifest daemonset`). */}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
{{- end }}

{{/* svc_election: the value, or true unless BGP is on. */}}
{{- define "vigil.serviceElection" -}}
{{- if kindIs "invalid" .Values.serviceElection }}{{ not .Values.bgp.enabled }}{{ else }}{{ .Values.serviceElection }}{{ end }}
{{- end }}

{{/* vip_arp: the value, or true unless BGP is on. */}}
{{- define "vigil.arp" -}}
{{- if kindIs "invalid" .Values.arp }}{{ not .Values.bgp.enabled }}{{ else }}{{ .Values.arp }}{{ end }}
{{- end }}

{{/* A (cluster-scoped) vigil.io object from a {name, spec} value. */}}
{{- define "vigil.object" -}}
apiVersion: vigil.io/v1alpha1
kind: {{ .kind }}
metadata:
  name: {{ required (printf "every %s needs a name" .kind) .obj.name }}
  labels:
    app.kubernetes.io/name: vigil
spec:
  {{- toYaml (required (printf "%s %s needs a spec" .kind .obj.name) .obj.spec) | nindent 2 }}
{{- end }}

{{/* bgp_as: a string as given, a number in decimal (a values file reads
numbers as floats: 4200000000 would print as 4.2e+09). */}}
{{- define "vigil.asn" -}}
{{- if kindIs "string" .Values.bgp.as }}{{ .Values.bgp.as }}{{ else }}{{ int64 .Values.bgp.as }}{{ end }}
{{- end }}
