{{/* Name of the chart, overridable. */}}
{{- define "showcase.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: release-chart, or the release name alone when it already contains the chart name. */}}
{{- define "showcase.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "showcase.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "showcase.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "showcase.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "showcase.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: resume-showcase
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "provisioner"). */}}
{{- define "showcase.selectorLabels" -}}
app.kubernetes.io/name: {{ include "showcase.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The provisioner's ServiceAccount name. */}}
{{- define "showcase.provisionerServiceAccount" -}}
{{- printf "%s-provisioner" (include "showcase.fullname" .) -}}
{{- end -}}

{{/* Image of one component: include with (dict "ctx" $ "component" "server"). */}}
{{- define "showcase.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .component (default .ctx.Chart.AppVersion .ctx.Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the signing key. */}}
{{- define "showcase.signingSecret" -}}
{{- default (printf "%s-signing-key" (include "showcase.fullname" .)) .Values.signingKey.existingSecret -}}
{{- end -}}

{{/* The ConfigMap every session Job is owned by: deleting the release deletes their Jobs. */}}
{{- define "showcase.sessionOwner" -}}
{{- printf "%s-sessions" (include "showcase.fullname" .) -}}
{{- end -}}

{{/* The public WebSocket base URL of the edge. */}}
{{- define "showcase.edgeUrl" -}}
{{- printf "%s://%s" (ternary "wss" "ws" .Values.ingress.tls.enabled) .Values.ingress.host -}}
{{- end -}}

{{/* The restricted Pod Security profile, for pods and containers. */}}
{{- define "showcase.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "showcase.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The names of .Values.imagePullSecrets, comma-separated (the provisioner gives them to session Jobs). */}}
{{- define "showcase.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* Where a component's pods may run (its nodeSelector, affinity, tolerations, topologySpreadConstraints and
priorityClassName values), as pod spec fields; pass the component's values. */}}
{{- define "showcase.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* What the provisioner puts on session pods: the session values' scheduling fields and pod metadata, as
the JSON its --session-pod-template takes. */}}
{{- define "showcase.sessionPodTemplate" -}}
{{- $s := .Values.session -}}
{{- $t := dict -}}
{{- with $s.nodeSelector }}{{ $_ := set $t "nodeSelector" . }}{{ end -}}
{{- with $s.affinity }}{{ $_ := set $t "affinity" . }}{{ end -}}
{{- with $s.tolerations }}{{ $_ := set $t "tolerations" . }}{{ end -}}
{{- with $s.topologySpreadConstraints }}{{ $_ := set $t "topologySpreadConstraints" . }}{{ end -}}
{{- with $s.priorityClassName }}{{ $_ := set $t "priorityClassName" . }}{{ end -}}
{{- with $s.podAnnotations }}{{ $_ := set $t "annotations" . }}{{ end -}}
{{- with $s.podLabels }}{{ $_ := set $t "labels" . }}{{ end -}}
{{- toJson $t -}}
{{- end -}}
