{{/* Names and labels. */}}
{{- define "mcptrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcptrail.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "mcptrail.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "mcptrail.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mcptrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcptrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcptrail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mcptrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mcptrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcptrail.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mcptrail.secretName" -}}
{{- if .Values.secrets.existingSecret }}{{ .Values.secrets.existingSecret }}{{ else }}{{ include "mcptrail.fullname" . }}{{ end }}
{{- end }}

{{- define "mcptrail.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.variant }}{{ $tag = printf "%s-%s" $tag .Values.image.variant }}{{ end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{- define "mcptrail.redisAddr" -}}
{{- if .Values.redis.addr }}{{ .Values.redis.addr }}{{ else }}{{ include "mcptrail.fullname" . }}-redis:6379{{ end }}
{{- end }}

{{/* Env variable holding auth token <name>'s sha256. */}}
{{- define "mcptrail.tokenEnv" -}}
{{- printf "MCPTRAIL_TOKEN_%s_SHA256" (. | upper | replace "-" "_" | replace "." "_") }}
{{- end }}

{{/*
The mcptrail config: what the chart owns (listen, admin, auth, ClickHouse,
spool, redaction key env) merged over .Values.config. Secrets are ${ENV}
references filled from the Secret.
*/}}
{{- define "mcptrail.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) }}
{{- $admin := dict }}
{{- if .Values.service.adminPort }}{{ $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.service.adminPort)) }}{{ end }}
{{- if .Values.secrets.adminTokenSHA256 }}{{ $_ := set $admin "token_sha256" "${MCPTRAIL_ADMIN_TOKEN_SHA256}" }}{{ end }}
{{- if $admin }}{{ $_ := set $cfg "admin" $admin }}{{ end }}
{{- if .Values.auth.tokens }}
{{- $toks := list }}
{{- range .Values.auth.tokens }}
{{- $t := . }}
{{- $tok := dict "name" .name "principal" .principal "sha256" (printf "${%s}" (include "mcptrail.tokenEnv" .name)) }}
{{- range $kind := list "tools" "prompts" "resources" "completions" "methods" }}{{ with get $t $kind }}{{ $_ := set $tok $kind . }}{{ end }}{{ end }}
{{- $toks = append $toks $tok }}
{{- end }}
{{- $_ := set $cfg "auth" (dict "tokens" $toks) }}
{{- end }}
{{- $rec := default dict (get $cfg "recorder") }}
{{- $ch := dict "addr" .Values.clickhouse.addr "database" .Values.clickhouse.database "username" .Values.clickhouse.username "password" "${CLICKHOUSE_PASSWORD}" "migrate" .Values.clickhouse.migrate }}
{{- if .Values.clickhouse.cluster }}{{ $_ := set $ch "cluster" .Values.clickhouse.cluster }}{{ end }}
{{- $_ := set $rec "clickhouse" $ch }}
{{- $spool := default dict (get $rec "spool") }}
{{- $_ := set $spool "dir" "/var/lib/mcptrail/spool" }}
{{- $_ := set $rec "spool" $spool }}
{{- $red := default dict (get $rec "redaction") }}
{{- $_ := set $red "hmac_key_env" "MCPTRAIL_REDACTION_KEY" }}
{{- $_ := set $rec "redaction" $red }}
{{- $_ := set $cfg "recorder" $rec }}
{{- /* Sealed sessions: the Secret's session-key (empty: not sealed). */}}
{{- $sess := default dict (get $cfg "sessions") }}
{{- $_ := set $sess "keys" "${MCPTRAIL_SESSION_KEY:-}" }}
{{- $_ := set $cfg "sessions" $sess }}
{{- if .Values.redis.enabled }}
{{- $redis := default dict (get $cfg "redis") }}
{{- $_ := set $redis "addr" "${MCPTRAIL_REDIS_ADDR}" }}
{{- if .Values.redis.rateLimitFailOpen }}{{ $_ := set $redis "rate_limit_fail_open" true }}{{ end }}
{{- $_ := set $cfg "redis" $redis }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
