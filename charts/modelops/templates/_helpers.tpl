{{/*
Names and labels shared by every template of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else "<release>-<chart>", else the
release name alone when it already contains the chart name. Truncated to 63 characters because
some Kubernetes name fields are DNS labels.
*/}}
{{- define "modelops.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "modelops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource of the release carries. */}}
{{- define "modelops.labels" -}}
helm.sh/chart: {{ include "modelops.chart" . }}
{{ include "modelops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelops
{{- end }}

{{/* The subset of labels that select the operator pod; immutable once installed. */}}
{{- define "modelops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "modelops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image reference: a digest wins over a tag; the tag defaults to appVersion. */}}
{{- define "modelops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The worker image reference the operator gives to the pods it creates. */}}
{{- define "modelops.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (default .Chart.AppVersion .Values.workerImage.tag) }}
{{- end }}

{{/* metrics.prometheusRule.labels as k=v,k2=v2 (sorted), the format of MODELOPS_ALERT_RULE_LABELS. */}}
{{- define "modelops.ruleLabels" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.metrics.prometheusRule.labels -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The leader election Lease's name (in the release namespace), checked for timings that could let two
operators reconcile at once: the same checks as the operator's own (and client-go's).
*/}}
{{- define "modelops.leaseName" -}}
{{- $e := .Values.leaderElection -}}
{{- if le (int $e.leaseDurationSeconds) (int $e.renewDeadlineSeconds) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%d) must be less than leaderElection.leaseDurationSeconds (%d): the leader must stop before a standby may take over" (int $e.renewDeadlineSeconds) (int $e.leaseDurationSeconds)) -}}
{{- end -}}
{{- if le (mulf (float64 $e.retryPeriodSeconds) 1.2) (float64 $e.renewDeadlineSeconds) | not -}}
{{- fail (printf "leaderElection.retryPeriodSeconds (%v) x 1.2 must be less than leaderElection.renewDeadlineSeconds (%v): the leader needs more than one attempt to renew" $e.retryPeriodSeconds $e.renewDeadlineSeconds) -}}
{{- end -}}
{{- default (include "modelops.fullname" .) $e.leaseName -}}
{{- end }}
