{{/*
The chart name, or nameOverride.
*/}}
{{- define "ucloud-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, else <release>-<chart>, or just <release> when it already
contains the chart name. Truncated to 63 characters (a DNS label).
*/}}
{{- define "ucloud-operator.fullname" -}}
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

{{/*
chart-version, as in the helm.sh/chart label.
*/}}
{{- define "ucloud-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "ucloud-operator.labels" -}}
helm.sh/chart: {{ include "ucloud-operator.chart" . }}
{{ include "ucloud-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ucloud-operator
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "ucloud-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ucloud-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "ucloud-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ucloud-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "ucloud-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The RBAC rules: exactly the API calls the operator makes, nothing more.
  ucloudjobs             list, watch   kopf's index and event handlers (no get: the index has them)
  ucloudjobs/status      patch         one merge patch per state change
  ucloudjobs/finalizers  update        replica pods carry a controller ownerReference with
                                       blockOwnerDeletion (OwnerReferencesPermissionEnforcement)
  pods                   list, watch, create, delete
  services               create, delete the headless Service of a multi-replica job, deleted
                                       when the job ends
  events (core v1)       create        one Event per state change
  podgroups              get, list, watch, create, delete
    (scheduling.k8s.io)                a PodGroup per job of more than one replica, deleted when
                                       the job ends; unless operator.gangAdmission is off (a rule
                                       for a resource the API server does not serve is harmless).
                                       Not podgroups/status, not workloads: the operator writes
                                       neither.
kopf runs standalone with scanning disabled: no CRD, namespace or peering access.
Nodes (list, watch: the node informer) are granted apart, by a ClusterRole in rbac.yaml
(rbac.nodes): a Role cannot grant a cluster-scoped resource.
*/}}
{{- define "ucloud-operator.rules" -}}
- apiGroups: ["ucloud.dk"]
  resources: ["ucloudjobs"]
  verbs: ["list", "watch"]
- apiGroups: ["ucloud.dk"]
  resources: ["ucloudjobs/status"]
  verbs: ["patch"]
- apiGroups: ["ucloud.dk"]
  resources: ["ucloudjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if ne (include "ucloud-operator.gangAdmission" .) "off" }}
- apiGroups: ["scheduling.k8s.io"]
  resources: ["podgroups"]
  verbs: ["get", "list", "watch", "create", "delete"]
{{- end }}
{{- end }}

{{/*
operator.gangAdmission as the operator's --gang-admission takes it: auto, on or off. Absent from
a release upgraded with --reuse-values from before it: auto, the operator's default. An unquoted
on or off in a values file is a boolean to YAML: true is on, false is off.
*/}}
{{- define "ucloud-operator.gangAdmission" -}}
{{- $value := dig "operator" "gangAdmission" "auto" .Values.AsMap }}
{{- if kindIs "bool" $value }}{{ ternary "on" "off" $value }}{{ else }}{{ $value }}{{ end }}
{{- end }}

{{/*
"true" when the chart renders the CRD, else empty: crds.enabled (absent from a release upgraded
with --reuse-values from before it: true) and its old name crds.install, which such a release
still carries; either one false leaves the CRD out.
*/}}
{{- define "ucloud-operator.crdsEnabled" -}}
{{- if and (dig "crds" "enabled" true .Values.AsMap) (dig "crds" "install" true .Values.AsMap) }}true{{ end }}
{{- end }}
