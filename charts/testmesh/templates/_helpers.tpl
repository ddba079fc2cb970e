{{/* The chart name, unless overridden. */}}
{{- define "testmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name, with the chart name added unless it already contains it. */}}
{{- define "testmesh.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "testmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "testmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: testmesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "testmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "testmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "testmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "testmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the operator runs and keeps its Lease: operator.operatorNamespace or the release namespace. */}}
{{- define "testmesh.operatorNamespace" -}}
{{- default .Release.Namespace .Values.operator.operatorNamespace }}
{{- end }}

{{- define "testmesh.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Seconds in a duration such as 90s, 15m or 1h30m (the form values.schema.json allows).
*/}}
{{- define "testmesh.seconds" -}}
{{- $hours := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | atoi }}
{{- $minutes := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | atoi }}
{{- $seconds := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $hours 3600) (mul $minutes 60) $seconds }}
{{- end }}

{{/* The pod's grace period: longer than the operator's own shutdown timeout. */}}
{{- define "testmesh.terminationGracePeriodSeconds" -}}
{{- $shutdown := include "testmesh.seconds" .Values.operator.shutdownTimeout | atoi }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed operator.shutdownTimeout (%s), or the kubelet kills the operator before it has released its Lease" .Values.terminationGracePeriodSeconds .Values.operator.shutdownTimeout) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* A listen address: host and port, with IPv6 hosts in brackets. */}}
{{- define "testmesh.listen" -}}
{{- $host := index . 0 }}
{{- if contains ":" $host }}
{{- printf "[%s]:%v" $host (index . 1) }}
{{- else }}
{{- printf "%s:%v" $host (index . 1) }}
{{- end }}
{{- end }}
