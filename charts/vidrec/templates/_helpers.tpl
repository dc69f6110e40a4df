{{/* Names: <release>-vidrec unless the release name already says vidrec. */}}
{{- define "vidrec.fullname" -}}
{{- if contains "vidrec" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vidrec" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vidrec.labels" -}}
app.kubernetes.io/name: vidrec
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vidrec.selector" -}}
app.kubernetes.io/name: vidrec
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vidrec.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Where every component mounts the shared volume. */}}
{{- define "vidrec.data" -}}/var/lib/vidrec{{- end -}}

{{- define "vidrec.trackingUri" -}}
{{- if .Values.registry.trackingUri -}}
{{ .Values.registry.trackingUri }}
{{- else if .Values.mlflow.enabled -}}
http://{{ include "vidrec.fullname" . }}-mlflow:5000
{{- end -}}
{{- end -}}

{{/*
vidrec's settings for the cluster: the chart's paths and addresses, overridden by the
user's `config` (the same tree local mode reads; the schema rejects unknown keys).
*/}}
{{- define "vidrec.settings" -}}
{{- $data := include "vidrec.data" . -}}
{{- $name := include "vidrec.fullname" . -}}
{{- $registry := dict "root" (printf "%s/registry" $data) -}}
{{- with include "vidrec.trackingUri" . }}{{ $_ := set $registry "tracking_uri" . }}{{ end -}}
{{- /* the online store every component reads and writes; with Redis, also where served
requests wait for their feedback (any pod may get it) */ -}}
{{- $features := dict "online_store" (printf "sqlite:///%s/online.db" $data) -}}
{{- $serving := dict -}}
{{- if .Values.redis.enabled -}}
{{- $_ := set $features "online_store" (printf "redis://%s-redis:6379/0" $name) -}}
{{- $_ := set $serving "served_store" (printf "redis://%s-redis:6379/1" $name) -}}
{{- end -}}
{{- $chart := dict
  "registry" $registry
  "features" $features
  "serving" $serving
  "monitoring" (dict
    "prometheus_url" .Values.monitoring.prometheusUrl
    "serving_target" (printf "%s-predictor:%d" $name (int .Values.serving.port))
    "rollout_target" (printf "%s-operator:9202" $name))
  "rollout" (dict
    "state" (printf "%s/rollout/rollout.json" $data)
    "routes" (printf "%s/serve/routes.json" $data)) -}}
{{- mustMergeOverwrite $chart (deepCopy .Values.config) | toPrettyJson -}}
{{- end -}}

{{- define "vidrec.volume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "vidrec.fullname" . }}-data
- name: config
  configMap:
    name: {{ include "vidrec.fullname" . }}-config
{{- end -}}

{{- define "vidrec.mounts" -}}
- name: data
  mountPath: {{ include "vidrec.data" . }}
- name: config
  mountPath: /etc/vidrec
  readOnly: true
{{- end -}}

{{- define "vidrec.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}
