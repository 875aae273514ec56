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
How the pods share the configured codes: sharding.mode, with "auto" resolved to "group" when more
than one pod runs and to "none" for one (no shards, the configuration as before).
*/}}
{{- define "infoway-kafka-bridge.shardingMode" -}}
{{- $mode := .Values.sharding.mode | default "auto" }}
{{- if eq $mode "auto" }}
{{- if gt (int .Values.replicas) 1 }}group{{ else }}none{{ end }}
{{- else }}
{{- $mode }}
{{- end }}
{{- end }}

{{/*
The consumer group of group mode, also the stem of the shards' transactional ids in both sharded
modes: sharding.group, else <namespace>.<full name>, so two releases (or one release name in two
namespaces) on one Kafka cluster never share a group or fence each other's producers.
*/}}
{{- define "infoway-kafka-bridge.shardingGroup" -}}
{{- .Values.sharding.group | default (printf "%s.%s" .Release.Namespace (include "infoway-kafka-bridge.fullname" .)) }}
{{- end }}

{{/*
The control topic of group mode: sharding.controlTopic, else infoway.bridge.shards.<group>. One per
deployment: its records name the owner of a shard but not the group, so two deployments writing
one control topic would read each other's heartbeats as their own shards' previous owners.
*/}}
{{- define "infoway-kafka-bridge.controlTopic" -}}
{{- .Values.sharding.controlTopic | default (printf "infoway.bridge.shards.%s" (include "infoway-kafka-bridge.shardingGroup" .)) }}
{{- end }}

{{/*
The bridge's `sharding` section as the chart renders it from values.sharding (empty for mode none).
The replica's name is the pod's, from the downward API (POD_NAME): the group's static member id,
and in static mode where the index comes from (the ordinal: <name>-2 is index 2 of `replicas`).
*/}}
{{- define "infoway-kafka-bridge.sharding" -}}
{{- $mode := include "infoway-kafka-bridge.shardingMode" . }}
{{- if ne $mode "none" }}
{{- $sharding := dict "mode" $mode "shards" (int .Values.sharding.shards) "instance" "${POD_NAME}" "group" (include "infoway-kafka-bridge.shardingGroup" .) }}
{{- if eq $mode "static" }}
{{- $_ := set $sharding "count" (int .Values.replicas) }}
{{- else }}
{{- $_ := set $sharding "control_topic" (include "infoway-kafka-bridge.controlTopic" .) }}
{{- $_ := set $sharding "session_timeout_seconds" .Values.sharding.sessionTimeoutSeconds }}
{{- $_ := set $sharding "handoff_timeout_seconds" .Values.sharding.handoffTimeoutSeconds }}
{{- end }}
{{- toYaml $sharding }}
{{- end }}
{{- end }}

{{/*
Seconds in a Prometheus duration such as 2m, 90s or 1m30s (the schema's "duration" pattern).
*/}}
{{- define "infoway-kafka-bridge.seconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 }}
{{- $number := regexFind "^[0-9]+" . | float64 }}
{{- $unit := trimPrefix (regexFind "^[0-9]+" .) . }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf $number $scale) }}
{{- end }}
{{- $total }}
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
Secret is named turned into its ${VAR} reference, the disk spool in the spool volume
(`spool.dir` under spool.mountPath; the rest of config.spool as given), and the `sharding`
section from values.sharding (merged with what config.sharding adds, such as
heartbeat_interval_seconds; the validation refuses the keys the chart sets).
*/}}
{{- define "infoway-kafka-bridge.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $spool := default dict $config.spool }}
{{- $_ := set $spool "dir" (printf "%s/spool" .Values.spool.mountPath) }}
{{- $_ := set $config "spool" $spool }}
{{- $sharding := include "infoway-kafka-bridge.sharding" . | fromYaml }}
{{- if $sharding }}
{{- $_ := set $config "sharding" (merge $sharding (default dict $config.sharding)) }}
{{- end }}
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
{{- $mode := include "infoway-kafka-bridge.shardingMode" . }}
{{- $replicas := int .Values.replicas }}
{{- if and (gt $replicas 1) (eq $mode "none") }}
{{- fail (printf "replicas is %d but sharding.mode is none: every pod would subscribe every code, so each record would be written %d times and the vendor would see %d times the connections on one key; set sharding.mode to auto or group (shards move to the living pods) or static (no failover)" $replicas $replicas $replicas) }}
{{- end }}
{{- if and (eq $mode "static") (gt $replicas (int .Values.sharding.shards)) }}
{{- fail (printf "sharding.mode static with replicas (%d) above sharding.shards (%d): some pod would own no shard; raise sharding.shards or lower replicas" $replicas (int .Values.sharding.shards)) }}
{{- end }}
{{- $budget := .Values.podDisruptionBudget }}
{{- if and $budget.enabled (gt $replicas 1) (not (kindIs "string" $budget.maxUnavailable)) (ge (int $budget.maxUnavailable) $replicas) }}
{{- fail (printf "podDisruptionBudget.maxUnavailable (%d) lets a drain evict all %d pods at once, leaving every shard without an owner; use 1 (or fewer than replicas)" (int $budget.maxUnavailable) $replicas) }}
{{- end }}
{{- $owned := dict "mode" "sharding.mode" "shards" "sharding.shards" "instance" "the pod name" "index" "the pod's ordinal" "count" "replicas" "group" "sharding.group" "control_topic" "sharding.controlTopic" "session_timeout_seconds" "sharding.sessionTimeoutSeconds" "handoff_timeout_seconds" "sharding.handoffTimeoutSeconds" }}
{{- $given := get .Values.config "sharding" }}
{{- if kindIs "map" $given }}
{{- range $key := keys $given | sortAlpha }}
{{- if hasKey $owned $key }}
{{- fail (printf "config.sharding.%s is set by the chart (from %s): set the value sharding instead, or leave it out" $key (get $owned $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if ne $mode "none" }}
{{- $transactional := dig "delivery" "transactional_id" "" .Values.config | default "" | toString }}
{{- $perPod := list "HOSTNAME" "POD_NAME" }}
{{- range .Values.env }}
{{- if and (kindIs "map" .) .valueFrom (kindIs "map" .valueFrom) (hasKey .valueFrom "fieldRef") }}
{{- $perPod = append $perPod .name }}
{{- end }}
{{- end }}
{{- range $perPod }}
{{- if contains (printf "${%s}" .) $transactional }}
{{- fail (printf "config.delivery.transactional_id references ${%s}, which differs from pod to pod: sharded (mode %s), every pod must derive the same transactional id for a shard (<id>.shard-NN), or a shard's new owner cannot fence the old one; leave it unset (the default is <kafka.client_id>.<sharding group>) or make it the same on every pod" . $mode) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (eq $mode "group") }}
{{- $for := include "infoway-kafka-bridge.seconds" .Values.prometheusRule.shardUnownedFor | float64 }}
{{- $scrape := include "infoway-kafka-bridge.seconds" .Values.serviceMonitor.interval | float64 }}
{{- $handoff := addf .Values.sharding.sessionTimeoutSeconds .Values.sharding.handoffTimeoutSeconds $scrape }}
{{- if le $for $handoff }}
{{- fail (printf "prometheusRule.shardUnownedFor (%s) must exceed sharding.sessionTimeoutSeconds (%v) plus sharding.handoffTimeoutSeconds (%v) plus one scrape (serviceMonitor.interval, %s): an ordinary hand-off after a pod dies would fire InfowayBridgeShardUnowned" .Values.prometheusRule.shardUnownedFor .Values.sharding.sessionTimeoutSeconds .Values.sharding.handoffTimeoutSeconds .Values.serviceMonitor.interval) }}
{{- end }}
{{- end }}
{{- $host := dig "metrics" "host" "0.0.0.0" .Values.config | toString }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "::1") }}
{{- fail "config.metrics.host is a loopback address: the probes and Prometheus could not reach it; use 0.0.0.0" }}
{{- end }}
{{- end }}
