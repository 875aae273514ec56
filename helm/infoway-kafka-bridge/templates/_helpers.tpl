{{/*
The chart name, or nameOverride.
*/}}
{{- define "infoway-kafka-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else <release>-<chart name>, or the
release name alone when it already contains the chart name. At most 52 characters, so the
StatefulSet's pods (<name>-<ordinal>) and their controller-revision-hash label stay within 63.
*/}}
{{- define "infoway-kafka-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "infoway-kafka-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "infoway-kafka-bridge.labels" -}}
helm.sh/chart: {{ include "infoway-kafka-bridge.chart" . }}
{{ include "infoway-kafka-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: infoway-kafka-bridge
{{- end }}

{{/*
Labels that select the release's pods.
*/}}
{{- define "infoway-kafka-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infoway-kafka-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pod runs as.
*/}}
{{- define "infoway-kafka-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infoway-kafka-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "infoway-kafka-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The port the bridge serves /metrics, /healthz and /readyz on: config.metrics.port (default 9464).
*/}}
{{- define "infoway-kafka-bridge.metricsPort" -}}
{{- dig "metrics" "port" 9464 .Values.config | int }}
{{- end }}

{{/*
Refuse values that would deploy a bridge that leaks its key, cannot start, or loses records on
shutdown. Renders nothing when the values are sound.
*/}}
{{- define "infoway-kafka-bridge.validate" -}}
{{- $_ := required "apiKeySecret.name is required: the name of an existing Secret holding the vendor API key (never put the key in values)" .Values.apiKeySecret.name }}
{{- $_ := required "apiKeySecret.key is required: the key inside that Secret" .Values.apiKeySecret.key }}
{{- $apiKey := dig "source" "api_key" "" .Values.config | toString }}
{{- if and $apiKey (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" $apiKey)) }}
{{- fail "config.source.api_key must be a reference such as ${INFOWAY_API_KEY}, never the key itself: the key comes from apiKeySecret" }}
{{- end }}
{{- $url := dig "source" "url" "" .Values.config | toString }}
{{- if contains "?" $url }}
{{- fail "config.source.url must have no query string: the key goes in apiKeySecret, never in the URL" }}
{{- end }}
{{- $flush := dig "kafka" "flush_timeout_seconds" 15 .Values.config | float64 }}
{{- if le (.Values.terminationGracePeriodSeconds | float64) (addf $flush 10) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.kafka.flush_timeout_seconds (%v) plus 10 s for closing the connections, or SIGKILL cuts the flush on SIGTERM" .Values.terminationGracePeriodSeconds $flush) }}
{{- end }}
{{- $host := dig "metrics" "host" "0.0.0.0" .Values.config | toString }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "::1") }}
{{- fail "config.metrics.host is a loopback address: the probes and Prometheus could not reach it; use 0.0.0.0" }}
{{- end }}
{{- end }}
