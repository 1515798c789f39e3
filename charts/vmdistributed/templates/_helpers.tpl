{{/* Chart name, overridable. */}}
{{- define "vmdistributed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name. Kept to 40 characters so "-controller-metrics" still fits 63. */}}
{{- define "vmdistributed.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vmdistributed.webhook.fullname" -}}
{{- printf "%s-webhook" (include "vmdistributed.fullname" .) }}
{{- end }}

{{- define "vmdistributed.controller.fullname" -}}
{{- printf "%s-controller" (include "vmdistributed.fullname" .) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vmdistributed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "vmdistributed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vmdistributed
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "vmdistributed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vmdistributed.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "vmdistributed.componentLabels" -}}
{{ include "vmdistributed.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vmdistributed.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "vmdistributed.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "vmdistributed.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vmdistributed.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "vmdistributed.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vmdistributed.controller.leaseName" -}}
{{- default (include "vmdistributed.controller.fullname" .) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/* Secret the webhook mounts: chart-made in generated and certManager modes, the user's otherwise. */}}
{{- define "vmdistributed.webhook.tlsSecretName" -}}
{{- if eq .Values.webhook.tls.mode "secret" }}
{{- required "webhook.tls.secret.name is required when webhook.tls.mode is secret" .Values.webhook.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "vmdistributed.webhook.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service, plus the user's extra names. */}}
{{- define "vmdistributed.webhook.dnsNames" -}}
{{- $svc := include "vmdistributed.webhook.fullname" . }}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- toJson (concat $names .Values.webhook.tls.extraDNSNames) }}
{{- end }}

{{/*
Pod and container security contexts that satisfy the Pod Security "restricted" profile: non-root,
no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem.
*/}}
{{- define "vmdistributed.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vmdistributed.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Soft anti-affinity over nodes; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "vmdistributed.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "vmdistributed.selectorLabels" . | nindent 12 }}
{{- end }}
