{{/* Chart name, release-scoped names and labels. */}}
{{- define "onechat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* 52 characters at most: a StatefulSet's pods get a label made of its
name and an 11-character hash, and labels end at 63; it also leaves room
for "-headless". */}}
{{- define "onechat.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "onechat.headless" -}}
{{- printf "%s-headless" (include "onechat.fullname" .) -}}
{{- end -}}

{{- define "onechat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onechat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "onechat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "onechat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "onechat.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{- define "onechat.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "onechat.fullname" .)) .Values.jwtSecret.existingSecret -}}
{{- end -}}

{{/* A cluster is more than one node; two are refused. */}}
{{- define "onechat.clustered" -}}
{{- if eq (int .Values.replicas) 2 -}}
{{- fail "replicas: 2 is not a safe cluster (its JetStream meta group has no majority when either node is down); use 1, or 3 or more" -}}
{{- end -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end -}}
{{- end -}}

{{/* Route URLs, one per pod, rendered from the replica count. */}}
{{- define "onechat.routes" -}}
{{- $full := include "onechat.fullname" . -}}
{{- $svc := include "onechat.headless" . -}}
{{- range $i := until (int .Values.replicas) }}
- nats://{{ $full }}-{{ $i }}.{{ $svc }}.{{ $.Release.Namespace }}.svc.{{ $.Values.clusterDomain }}:{{ $.Values.ports.routes }}
{{- end -}}
{{- end -}}

{{/* Seconds in a Go duration such as 20s, 1m or 1m30s (h, m, s only). */}}
{{- define "onechat.seconds" -}}
{{- $d := . -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+[hms]" $d -1 -}}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" $part))) -}}
{{- if hasSuffix "h" $part }}{{ $total = add $total (mul $n 3600) }}{{ end -}}
{{- if hasSuffix "m" $part }}{{ $total = add $total (mul $n 60) }}{{ end -}}
{{- if hasSuffix "s" $part }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- $total -}}
{{- end -}}
