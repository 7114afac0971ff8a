{{/* Names, labels and derived values shared by the templates. */}}

{{- define "flowpods.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowpods.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "flowpods.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "flowpods.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "flowpods.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart makes; uninstall checks find them by instance. */}}
{{- define "flowpods.labels" -}}
helm.sh/chart: {{ include "flowpods.chart" . }}
{{ include "flowpods.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowpods
{{- end }}

{{- define "flowpods.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowpods.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowpods.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowpods.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The worker pods' account: the name given, else the chart's when it makes one (watching a list),
else none: the namespace's default account, without a token (the operator sets
automountServiceAccountToken: false on every worker pod). */}}
{{- define "flowpods.workerServiceAccountName" -}}
{{- if .Values.worker.serviceAccount.name }}
{{- .Values.worker.serviceAccount.name }}
{{- else if and .Values.worker.serviceAccount.create .Values.watchNamespaces }}
{{- printf "%s-worker" (include "flowpods.fullname" .) }}
{{- end }}
{{- end }}

{{- define "flowpods.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "flowpods.workerImage" -}}
{{- default (include "flowpods.image" .) .Values.worker.image }}
{{- end }}

{{- define "flowpods.jaegerName" -}}
{{- printf "%s-jaeger" (include "flowpods.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's OTLP endpoint: the value, else the in-cluster Jaeger's port for the protocol when enabled, else none. */}}
{{- define "flowpods.otlpEndpoint" -}}
{{- if .Values.otlp.endpoint }}
{{- .Values.otlp.endpoint }}
{{- else if .Values.jaeger.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "flowpods.jaegerName" .) .Release.Namespace (ternary 4317 4318 (eq .Values.otlp.protocol "grpc")) }}
{{- end }}
{{- end }}

{{/* Where `helm test` runs its flow: the release's namespace when it is watched, else the first watched one. */}}
{{- define "flowpods.testNamespace" -}}
{{- if or (not .Values.watchNamespaces) (has .Release.Namespace .Values.watchNamespaces) }}
{{- .Release.Namespace }}
{{- else }}
{{- first .Values.watchNamespaces }}
{{- end }}
{{- end }}

{{/* The operator's permissions inside a watched namespace (a Role there, or the ClusterRole). */}}
{{- define "flowpods.namespacedRules" -}}
# Flows: watched and validated; kopf patches its progress annotations, the status and Ready condition.
- apiGroups: ["flowpods.io"]
  resources: ["flows"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["flowpods.io"]
  resources: ["flows/status"]
  verbs: ["get", "patch"]
# Executions: driven by the operator, created by Schedule and Flow triggers, subflows and the API; the kill
# annotation and the TTL clean-up.
- apiGroups: ["flowpods.io"]
  resources: ["executions"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["flowpods.io"]
  resources: ["executions/status"]
  verbs: ["get", "update", "patch"]
# One worker pod per task-run attempt.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Events on Flows and Executions (kopf posts core/v1 Events); the run view lists a pod's Events ("why pending").
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
# The run view shows a task run's log from its pod, to users who may `get` the execution.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The span watermark ledger: one ConfigMap of this name per namespace (docs/tracing.md); no other ConfigMap can
# be read or changed. `create` cannot be limited to a name (RBAC knows no name before the object exists).
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["flowpods-span-watermarks"]
  verbs: ["get", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped permissions, needed in both modes: the API's TokenReview and SubjectAccessReview,
and reading CRDs (kopf notices flowpods' CRDs being updated or removed). */}}
{{- define "flowpods.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.api.enabled }}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/*
OTEL_METRICS_EXPORTER: prometheus and/or otlp, or none.
*/}}
{{- define "flowpods.metricsExporters" -}}
{{- $exporters := list -}}
{{- if .Values.metrics.enabled }}{{ $exporters = append $exporters "prometheus" }}{{ end -}}
{{- if .Values.metrics.otlp }}{{ $exporters = append $exporters "otlp" }}{{ end -}}
{{- default "none" (join "," $exporters) -}}
{{- end }}
