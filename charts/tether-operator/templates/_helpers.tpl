{{- define "tether.name" -}}tether-operator{{- end -}}
{{- define "tether.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- /* The labels that pick this release's operator pods: the Deployment's
selector, the metrics Service and --operator-pod-labels (each session's
NetworkPolicy admits exactly these pods to the runner), so they cannot drift. */ -}}
{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: tether-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "tether.operatorPodLabelsArg" -}}
app.kubernetes.io/name=tether-operator,app.kubernetes.io/instance={{ .Release.Name }}
{{- end -}}
{{- define "tether.labels" -}}
{{ include "tether.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
