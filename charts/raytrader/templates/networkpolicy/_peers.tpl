{{/* NetworkPolicy building blocks. Pods are selected by the release labels plus either
app.kubernetes.io/component or, for Ray pods, raytrader.io/ray-node / raytrader.io/ray-cluster. */}}

{{/* A peer: the release's pods of one component. (dict "ctx" $ "component" "mlflow") */}}
{{- define "raytrader.np.component" -}}
- podSelector:
    matchLabels:
      {{- include "raytrader.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}

{{/* A peer: every Ray pod of the release (all clusters). */}}
{{- define "raytrader.np.rayPods" -}}
- podSelector:
    matchLabels:
      {{- include "raytrader.releaseSelector" . | nindent 6 }}
    matchExpressions:
      - key: raytrader.io/ray-node
        operator: Exists
{{- end }}

{{/* A peer: pods of the namespace that opted in with a label (dict "ctx" $ "label" "raytrader.io/kafka-client"). */}}
{{- define "raytrader.np.optIn" -}}
- podSelector:
    matchLabels:
      {{ .label }}: "true"
{{- end }}

{{/* The KubeRay operator's pods (kuberay.operatorNamespace, kuberay.operatorPodLabels). */}}
{{- define "raytrader.np.kuberayOperator" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.kuberay.operatorNamespace }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.kuberay.operatorPodLabels | nindent 6 }}
{{- end }}

{{/* Prometheus (monitoring.prometheusNamespaceSelector). */}}
{{- define "raytrader.np.prometheus" -}}
- namespaceSelector:
    {{- toYaml .Values.monitoring.prometheusNamespaceSelector | nindent 4 }}
{{- end }}

{{/* Is anything scraped (annotations or monitors)? */}}
{{- define "raytrader.np.scraped" -}}
{{- if or .Values.monitoring.scrapeAnnotations (include "raytrader.monitorsRendered" .) }}true{{ end }}
{{- end }}

{{/* Egress rules to a dependency, in-chart or external:
(dict "ctx" $ "dep" "postgresql" "internal" .Values.postgresql.enabled "port" 5432 "externalPort" .Values.postgresql.external.port) */}}
{{- define "raytrader.np.egressTo" -}}
{{- if .internal -}}
- to:
    {{- include "raytrader.np.component" (dict "ctx" .ctx "component" .dep) | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ .port }}
{{- else -}}
- to:
    {{- toYaml .ctx.Values.networkPolicy.externalPeers | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ .externalPort }}
{{- end }}
{{- end }}

{{/* Egress of a Feast client: Redis (online store) and PostgreSQL (SQL registry). */}}
{{- define "raytrader.np.feastClientEgress" -}}
{{- $v := .Values }}
{{- include "raytrader.np.egressTo" (dict "ctx" . "dep" "redis" "internal" $v.redis.enabled "port" 6379 "externalPort" $v.redis.external.port) }}
{{ include "raytrader.np.egressTo" (dict "ctx" . "dep" "postgresql" "internal" $v.postgresql.enabled "port" 5432 "externalPort" $v.postgresql.external.port) }}
{{- end }}

{{/* Egress to the MLflow server (in-chart or external). */}}
{{- define "raytrader.np.mlflowEgress" -}}
{{- include "raytrader.np.egressTo" (dict "ctx" . "dep" "mlflow" "internal" .Values.mlflow.enabled "port" 5000 "externalPort" .Values.mlflow.external.port) }}
{{- end }}

{{/* Egress to Kafka's brokers. An in-chart client is sent to the advertised listeners of every
node (port 9092 of the kafka pods). */}}
{{- define "raytrader.np.kafkaEgress" -}}
{{- include "raytrader.np.egressTo" (dict "ctx" . "dep" "kafka" "internal" .Values.kafka.enabled "port" 9092 "externalPort" .Values.kafka.external.port) }}
{{- end }}

{{/* The metadata of one NetworkPolicy: (dict "ctx" $ "name" "mlflow" "component" "mlflow"). */}}
{{- define "raytrader.np.metadata" -}}
metadata:
  name: {{ include "raytrader.componentName" (dict "ctx" .ctx "name" (printf "np-%s" .name)) }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "raytrader.labels" (dict "ctx" .ctx "component" (default "network" .component)) | nindent 4 }}
{{- end }}
