{{/* Chart name, truncated to 63 characters. */}}
{{- define "cryptopipe-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "cryptopipe-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cryptopipe-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels. */}}
{{- define "cryptopipe-operator.labels" -}}
helm.sh/chart: {{ include "cryptopipe-operator.chart" . }}
{{ include "cryptopipe-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cryptopipe
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels (never change: a Deployment's selector is immutable). */}}
{{- define "cryptopipe-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cryptopipe-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cryptopipe-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cryptopipe-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cryptopipe-operator.image" -}}
{{- include "cryptopipe-operator.withRegistry" (list . (printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag))) }}
{{- end }}

{{/* An image reference under image.registry: include "cryptopipe-operator.withRegistry" (list . "repo:tag") */}}
{{- define "cryptopipe-operator.withRegistry" -}}
{{- $registry := (index . 0).Values.image.registry }}
{{- if $registry }}{{ printf "%s/%s" $registry (index . 1) }}{{ else }}{{ index . 1 }}{{ end }}
{{- end }}

{{/*
What the operator does to pipelines and their children, in the namespaces it watches: exactly
the verbs it uses (list to read children, create/patch for server-side apply, delete to prune).
*/}}
{{- define "cryptopipe-operator.rules" -}}
- apiGroups: [cryptopipe.io]
  resources: [cryptopipelines]
  verbs: [get, list, watch]
- apiGroups: [cryptopipe.io]
  resources: [cryptopipelines/status]
  verbs: [patch]
- apiGroups: [cryptopipe.io]
  # ownerReferences with blockOwnerDeletion need it where OwnerReferencesPermissionEnforcement is on.
  resources: [cryptopipelines/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [list, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [list, create, patch, delete]
- apiGroups: [kafka.strimzi.io]
  resources: [kafkatopics]
  verbs: [list, create, patch, delete]
- apiGroups: [sparkoperator.k8s.io]
  resources: [sparkapplications]
  verbs: [list, create, patch, delete]
- apiGroups: [""]
  # The training Jobs' pods carry the trainer's result in their termination message.
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.platform.kafka.manageUsers }}
- apiGroups: [""]
  # Each component's Kafka user's Secret (kafka.manageUsers): written, never read back.
  resources: [secrets]
  verbs: [create, patch]
{{- end }}
{{- if .Values.platform.freshness.enabled }}
- apiGroups: [""]
  # DataFresh and lastForecastTime: the producer's and predictor's /metrics through the
  # API server's service proxy.
  resources: [services/proxy]
  verbs: [get]
{{- end }}
{{- end }}

{{/* The operator's config file, from .Values.platform. */}}
{{- define "cryptopipe-operator.config" -}}
{{- $platform := deepCopy .Values.platform }}
{{- $images := dict "pullPolicy" .Values.platform.images.pullPolicy }}
{{- range $name, $ref := omit .Values.platform.images "pullPolicy" }}
{{- $_ := set $images $name (include "cryptopipe-operator.withRegistry" (list $ $ref)) }}
{{- end }}
{{- $_ := set $platform "images" $images }}
{{- $_ := set $platform "resyncSeconds" .Values.operator.resyncSeconds }}
{{- toYaml $platform }}
{{- end }}
