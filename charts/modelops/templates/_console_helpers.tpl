{{/* Labels of the console's objects: the release's, with component console. */}}
{{- define "modelops.consoleLabels" -}}
helm.sh/chart: {{ include "modelops.chart" . }}
{{ include "modelops.consoleSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelops
{{- end }}

{{/* What selects the console pod (never the operator's). */}}
{{- define "modelops.consoleSelectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: console
{{- end }}
