{{/* The experiment API and the dashboard: names, URLs, the store's wiring. */}}

{{/* The experiment API's resource name (Deployment, Service, ServiceAccount). */}}
{{- define "raytrader.experimentApiName" -}}
{{- include "raytrader.componentName" (dict "ctx" . "name" "experiment-api") }}
{{- end }}

{{/* The API's URL inside the namespace (the dashboard reads it). */}}
{{- define "raytrader.experimentApiUrl" -}}
{{- printf "http://%s:%v" (include "raytrader.experimentApiName" .) .Values.experimentApi.service.port }}
{{- end }}

{{/* Secret with the API's tokens (keys read-token, admin-token). */}}
{{- define "raytrader.experimentTokenSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "experiment-api-tokens")) .Values.experimentApi.auth.existingSecret }}
{{- end }}

{{/* An external store's Secret (key experimentApi.database.existingSecretKey). */}}
{{- define "raytrader.experimentDbSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "experiment-db")) .Values.experimentApi.database.existingSecret }}
{{- end }}

{{/* Where the API's tokens are mounted. */}}
{{- define "raytrader.experimentTokenDir" -}}/etc/raytrader/experiment-api{{- end }}

{{/* The decision service's URL inside the namespace (as the helm test calls it). */}}
{{- define "raytrader.serveUrl" -}}
{{- printf "http://%s:%v" (include "raytrader.componentName" (dict "ctx" . "name" "inference")) .Values.inference.port }}
{{- end }}

{{/* The stream consumer whose metrics the API's system page reads: the first of
streamConsumer.consumers (its Service, templates/stream/service.yaml). */}}
{{- define "raytrader.streamMetricsUrl" -}}
{{- with first .Values.streamConsumer.consumers }}
{{- printf "http://%s:%v/metrics" (include "raytrader.componentName" (dict "ctx" $ "name" (printf "stream-%s" (.timeframe | lower)))) $.Values.streamConsumer.metricsPort }}
{{- end }}
{{- end }}

{{/* Does the API talk to the standalone RayCluster's Jobs API? */}}
{{- define "raytrader.experimentApiRay" -}}
{{- if .Values.rayCluster.enabled }}true{{ end }}
{{- end }}

{{/* The store's environment: the password-less URL of the in-chart database (PGPASSWORD and the
external URL come from secret-env). (dict "ctx" $) */}}
{{- define "raytrader.experimentDbEnv" -}}
{{- if .ctx.Values.postgresql.enabled }}
- name: RAYTRADER_DB_URL
  value: {{ include "raytrader.internalDbUrl" (dict "ctx" .ctx "database" .ctx.Values.experimentApi.database.name) | quote }}
{{- end }}
{{- end }}

{{/* The secret-env sources of the store: PGPASSWORD (in-chart) or RAYTRADER_DB_URL (external),
then the script's ConfigMap (a projected volume needs one source). */}}
{{- define "raytrader.experimentSecretEnvVolume" -}}
{{- $v := .Values }}
- name: secret-env
  projected:
    defaultMode: 0440
    sources:
      {{- if $v.postgresql.enabled }}
      - secret:
          name: {{ include "raytrader.postgresqlSecretName" . }}
          items:
            - key: password
              path: PGPASSWORD
      {{- else }}
      - secret:
          name: {{ include "raytrader.experimentDbSecretName" . }}
          items:
            - key: {{ $v.experimentApi.database.existingSecretKey }}
              path: RAYTRADER_DB_URL
      {{- end }}
      - configMap:
          name: {{ include "raytrader.componentName" (dict "ctx" . "name" "bin") }}
          items:
            - key: secret-env.sh
              path: .keep
- name: bin
  configMap:
    name: {{ include "raytrader.componentName" (dict "ctx" . "name" "bin") }}
    defaultMode: 0444
{{- end }}

{{/* The API's tokens as files: (dict "ctx" $ "admin" true). */}}
{{- define "raytrader.experimentTokenVolume" -}}
- name: experiment-api-tokens
  secret:
    secretName: {{ include "raytrader.experimentTokenSecretName" .ctx }}
    defaultMode: 0440
    items:
      - key: read-token
        path: read-token
      {{- if .admin }}
      - key: admin-token
        path: admin-token
      {{- end }}
{{- end }}
