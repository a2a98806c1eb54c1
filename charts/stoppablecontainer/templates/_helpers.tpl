{{/*
The CSI driver name. It must equal CSI_DRIVER_NAME in api/src/consts.rs (the operator writes it
into every consumer pod's inline volume); tests/e2e/lib/chart.py lint checks that they agree.
*/}}
{{- define "sc.driverName" -}}rootfs.stoppablecontainer.xtlsoft.top{{- end }}

{{- define "sc.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every namespaced object: the release name, plus the chart name unless it contains it. */}}
{{- define "sc.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stoppablecontainer
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* image reference: include "sc.image" (list $ .Values.operator.image "operator") */}}
{{- define "sc.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $component := index . 2 -}}
{{- $repository := $image.repository | default (printf "%s/%s" $root.Values.image.repositoryPrefix $component) -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end }}

{{- define "sc.operatorName" -}}{{ include "sc.fullname" . }}-operator{{- end }}
{{- define "sc.nodeName" -}}{{ include "sc.fullname" . }}-node{{- end }}

{{/* The plugin's socket as a host path: the plugin enters the host mount namespace to serve on it,
and kubelet and the sidecars reach it there. */}}
{{- define "sc.pluginDir" -}}{{ trimSuffix "/" .Values.node.kubeletDir }}/plugins/{{ include "sc.driverName" . }}{{- end }}
{{- define "sc.socketPath" -}}{{ include "sc.pluginDir" . }}/csi.sock{{- end }}
