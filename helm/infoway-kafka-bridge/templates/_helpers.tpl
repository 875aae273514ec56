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
Labels of every resource: the Kubernetes recommended app.kubernetes.io/* set.
*/}}
{{- define "infoway-kafka-bridge.labels" -}}
helm.sh/chart: {{ include "infoway-kafka-bridge.chart" . }}
{{ include "infoway-kafka-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ include "infoway-kafka-bridge.tag" . | trunc 63 | quote }}
app.kubernetes.io/component: bridge
app.kubernetes.io/part-of: infoway-kafka-bridge
app.kubernetes.io/managed-by: {{ .Release.Service }}
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
The image tag: image.tag, else the chart's appVersion. values.schema.json insists on a string,
so an unquoted `tag: 1.10` is refused instead of becoming 1.1.
*/}}
{{- define "infoway-kafka-bridge.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The image reference: repository:tag, or repository@digest when image.digest is set.
*/}}
{{- define "infoway-kafka-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "infoway-kafka-bridge.tag" .) }}
{{- end }}
{{- end }}

{{/*
The port the bridge serves /metrics, /healthz and /readyz on: config.metrics.port (default 9464).
*/}}
{{- define "infoway-kafka-bridge.metricsPort" -}}
{{- dig "metrics" "port" 9464 .Values.config | int }}
{{- end }}

{{/*
How many pods may run the whole configuration side by side: 1. Each pod subscribes to every
code today, so a second pod duplicates every record and the vendor connections on the key.
This is the one place to change when the bridge shares work through a Kafka consumer group:
NOTES.txt warns above it, and nothing else reads it.
*/}}
{{- define "infoway-kafka-bridge.maxReplicas" -}}
1
{{- end }}

{{/*
Every secret the bridge's configuration can hold, and how it reaches the pod: the Secret named by
the value `secret` becomes the environment variable `env`, and the configuration key `key` of
the section `section` becomes the reference ${env}. Values never carry the secret itself.
*/}}
{{- define "infoway-kafka-bridge.secretWiring" -}}
secrets:
  - secret: apiKeySecret
    env: INFOWAY_API_KEY
    section: [source]
    key: api_key
  - secret: kafkaSaslPasswordSecret
    env: KAFKA_SASL_PASSWORD
    section: [kafka, sasl]
    key: password
  - secret: kafkaTlsKeyPasswordSecret
    env: KAFKA_TLS_KEY_PASSWORD
    section: [kafka, tls]
    key: key_password
  - secret: registryPasswordSecret
    env: SCHEMA_REGISTRY_PASSWORD
    section: [serialization, registry]
    key: password
{{- end }}

{{/*
The bridge configuration as rendered into the ConfigMap: values.config with every secret whose
Secret is named turned into its ${VAR} reference, and the disk spool in the spool volume
(`spool.dir` under spool.mountPath; the rest of config.spool as given).
*/}}
{{- define "infoway-kafka-bridge.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $spool := default dict $config.spool }}
{{- $_ := set $spool "dir" (printf "%s/spool" .Values.spool.mountPath) }}
{{- $_ := set $config "spool" $spool }}
{{- range (include "infoway-kafka-bridge.secretWiring" . | fromYaml).secrets }}
{{- $secret := index $.Values .secret }}
{{- if $secret.name }}
{{- $node := $config }}
{{- range .section }}
{{- if not (hasKey $node .) }}
{{- $_ := set $node . dict }}
{{- end }}
{{- $node = index $node . }}
{{- end }}
{{- $_ := set $node .key (printf "${%s}" .env) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Refuse values that would deploy a bridge that leaks a secret, cannot start, or loses records on
shutdown. Renders nothing when the values are sound. values.schema.json checks types, ranges and
the shape of the secret references first; these are the rules that span several values.
*/}}
{{- define "infoway-kafka-bridge.validate" -}}
{{- $_ := required "apiKeySecret.name is required: the name of an existing Secret holding the vendor API key (never put the key in values)" .Values.apiKeySecret.name }}
{{- range (include "infoway-kafka-bridge.secretWiring" . | fromYaml).secrets }}
{{- $secret := index $.Values .secret }}
{{- $node := $.Values.config }}
{{- range .section }}
{{- if and (kindIs "map" $node) (hasKey $node .) }}{{ $node = index $node . }}{{ else }}{{ $node = "" }}{{ end }}
{{- end }}
{{- if kindIs "map" $node }}
{{- $given := get $node .key }}
{{- if and $given (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString $given))) }}
{{- fail (printf "config.%s.%s must be a reference such as ${%s}, never the secret itself: put it in a Secret and name it in %s.name" (join "." .section) .key .env .secret) }}
{{- end }}
{{- else if and $secret.name (ne .secret "apiKeySecret") }}
{{- fail (printf "%s.name is set but config.%s is not: configure that section, or leave %s.name empty" .secret (join "." .section) .secret) }}
{{- end }}
{{- end }}
{{- if and (dig "kafka" "sasl" "" .Values.config) (not .Values.kafkaSaslPasswordSecret.name) }}
{{- if not (or (dig "kafka" "sasl" "password" "" .Values.config) (dig "kafka" "sasl" "password_file" "" .Values.config)) }}
{{- fail "config.kafka.sasl has no password: name the Secret holding it in kafkaSaslPasswordSecret.name (or give password_file from a mounted Secret)" }}
{{- end }}
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
