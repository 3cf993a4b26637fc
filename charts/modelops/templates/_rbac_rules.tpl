{{/*
The RBAC rules of the operator. They must equal what modelops.controllers.permissions says the
operator's code really calls; tests/chart/test_chart_rbac.py fails when the two drift apart, so a new API
call in the operator needs a new rule here too.
*/}}

{{/* Cluster-scoped resources: always in the ClusterRole. */}}
{{- define "modelops.rules.cluster" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Only with watchNamespaces: kopf resolves the --namespace names (and globs) against the cluster. */}}
{{- define "modelops.rules.namespaceListing" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Namespaced resources: in the ClusterRole, or with watchNamespaces in a Role per namespace. */}}
{{- define "modelops.rules.namespaced" -}}
- apiGroups: ["modelops.dev"]
  resources: ["trainingjobs", "modelversions", "inferenceservices", "tuningjobs"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["modelops.dev"]
  resources: ["trainingjobs/status", "modelversions/status", "inferenceservices/status", "tuningjobs/status"]
  verbs: ["patch"]
- apiGroups: ["modelops.dev"]
  resources: ["modelversions"]
  verbs: ["create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["prometheusrules"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create"]
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshots"]
  verbs: ["list", "create", "delete"]
- apiGroups: ["modelops.dev"]
  resources: ["tuningjobs", "trainingjobs"]
  verbs: ["get"]
- apiGroups: ["modelops.dev"]
  resources: ["trainingjobs"]
  verbs: ["create", "delete"]
{{- end }}
