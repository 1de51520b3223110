{{/* Names: <release>-llm-hub unless the release is already called that, at most 63 characters. */}}
{{- define "llm-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-hub.fullname" -}}
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

{{/* A component's name: <fullname>-<component>, at most 63 characters. Call with (list $ "hub"). */}}
{{- define "llm-hub.component" -}}
{{- $ := index . 0 }}
{{- printf "%s-%s" (include "llm-hub.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "llm-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component. Call with (list $ "hub"). */}}
{{- define "llm-hub.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "llm-hub.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "llm-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-hub.secretName" -}}
{{- default (include "llm-hub.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret's data: the four values, required unless an existing Secret is used. */}}
{{- define "llm-hub.secretData" -}}
HUB_SECRET_KEY: {{ required "secrets.secretKey (HUB_SECRET_KEY, at least 32 characters) is required, or set secrets.existingSecret" .Values.secrets.secretKey | b64enc | quote }}
HUB_DATABASE_URL: {{ required "secrets.databaseUrl (HUB_DATABASE_URL, postgres://...) is required, or set secrets.existingSecret" .Values.secrets.databaseUrl | b64enc | quote }}
HUB_REDIS_URL: {{ required "secrets.redisUrl (HUB_REDIS_URL, redis://...) is required, or set secrets.existingSecret" .Values.secrets.redisUrl | b64enc | quote }}
INFERENCE_API_KEY: {{ required "secrets.inferenceApiKey (INFERENCE_API_KEY, at least 16 characters) is required, or set secrets.existingSecret" .Values.secrets.inferenceApiKey | b64enc | quote }}
{{- end }}

{{- define "llm-hub.hubImage" -}}
{{- printf "%s:%s" .Values.image.hub.repository (default (printf "%s-cpu" .Chart.AppVersion) .Values.image.hub.tag) }}
{{- end }}

{{/* The inference image of one model. Call with (list $ $model). */}}
{{- define "llm-hub.inferenceImage" -}}
{{- $ := index . 0 }}
{{- $model := index . 1 }}
{{- if gt (int (default 0 $model.gpus)) 0 }}
{{- printf "%s:%s" $.Values.image.inference.repository (default (printf "%s-cuda" $.Chart.AppVersion) $.Values.image.inference.cudaTag) }}
{{- else }}
{{- printf "%s:%s" $.Values.image.inference.repository (default (printf "%s-cpu" $.Chart.AppVersion) $.Values.image.inference.tag) }}
{{- end }}
{{- end }}

{{/* The inference Service's base URL of one model, as the hub registers it. Call with (list $ $model). */}}
{{- define "llm-hub.inferenceUrl" -}}
{{- $ := index . 0 }}
{{- $model := index . 1 }}
{{- printf "http://%s:%v/v1" (include "llm-hub.component" (list $ (printf "inference-%s" $model.name))) $.Values.inference.port }}
{{- end }}

{{/* The hub processes' environment: the ConfigMap, then the Secret. */}}
{{- define "llm-hub.hubEnvFrom" -}}
- configMapRef:
    name: {{ include "llm-hub.fullname" . }}
- secretRef:
    name: {{ include "llm-hub.secretName" . }}
{{- end }}

{{/* Roll the hub processes when their settings change. */}}
{{- define "llm-hub.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* HUB_DATA_DIR and /tmp, writable under a read-only root file system. */}}
{{- define "llm-hub.hubVolumes" -}}
- name: data
  {{- toYaml .Values.hub.dataVolume | nindent 2 }}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "llm-hub.hubVolumeMounts" -}}
- name: data
  mountPath: /var/lib/llm-hub
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* A probe's request: Host localhost, which HUB_ALLOWED_HOSTS always lists. Call with "/health" or "/ready". */}}
{{- define "llm-hub.hubProbe" -}}
httpGet:
  path: {{ . }}
  port: http
  httpHeaders:
    - name: Host
      value: localhost
{{- end }}

{{/* localhost (the probes), the hub Service's names (clients in the cluster), the ingress host, hub.allowedHosts. */}}
{{- define "llm-hub.allowedHosts" -}}
{{- $service := include "llm-hub.component" (list . "hub") }}
{{- $hosts := list "localhost" $service (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) }}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- $hosts = append $hosts .Values.ingress.host }}
{{- end }}
{{- join "," (uniq (concat $hosts .Values.hub.allowedHosts)) }}
{{- end }}

{{- define "llm-hub.publicUrl" -}}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) .Values.ingress.host }}
{{- else }}
{{- printf "http://%s:%v" (include "llm-hub.component" (list . "hub")) .Values.service.port }}
{{- end }}
{{- end }}

{{/* The non-secret settings (the ConfigMap's data; inlined in the migration hook, which runs before it exists). */}}
{{- define "llm-hub.configData" -}}
{{- range list "HUB_SECRET_KEY" "HUB_DATABASE_URL" "HUB_REDIS_URL" "INFERENCE_API_KEY" }}
{{- if hasKey $.Values.config . }}
{{- fail (printf "config.%s is a secret: set it under secrets (or in secrets.existingSecret), not in config" .) }}
{{- end }}
{{- end }}
{{- $data := dict "HUB_ENV" "prod" "HUB_HOST" "0.0.0.0" "HUB_PORT" "8000" "HUB_DATA_DIR" "/var/lib/llm-hub" }}
{{- $_ := set $data "HUB_ALLOWED_HOSTS" (include "llm-hub.allowedHosts" .) }}
{{- $_ = set $data "HUB_PUBLIC_URL" (include "llm-hub.publicUrl" .) }}
{{- $_ = set $data "HUB_CSRF_TRUSTED_ORIGINS" (include "llm-hub.publicUrl" .) }}
{{- $data = mustMergeOverwrite $data (deepCopy .Values.config) }}
{{- range $key, $value := $data }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "llm-hub.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* nodeSelector, tolerations, affinity of one component's values. Call with $.Values.hub, etc. */}}
{{- define "llm-hub.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
