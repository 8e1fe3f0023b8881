{{/* ---------------------------------------------------------------- names and labels */}}

{{/* The chart name. */}}
{{- define "raytrader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource-name prefix: <release>-<chart>, or <release> when it contains the chart name. */}}
{{- define "raytrader.fullname" -}}
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

{{/* A component's resource name: (dict "ctx" $ "name" "mlflow") -> <fullname>-mlflow. */}}
{{- define "raytrader.componentName" -}}
{{- printf "%s-%s" (include "raytrader.fullname" .ctx | trunc 50 | trimSuffix "-") .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A Ray resource's name: KubeRay derives pod and service names from it, and refuses RayJob and
RayService names over 47 characters. */}}
{{- define "raytrader.rayName" -}}
{{- printf "%s-%s" (include "raytrader.fullname" .ctx | trunc 30 | trimSuffix "-") .name | trunc 47 | trimSuffix "-" }}
{{- end }}

{{- define "raytrader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries: (dict "ctx" $ "component" "mlflow"). */}}
{{- define "raytrader.labels" -}}
helm.sh/chart: {{ include "raytrader.chart" .ctx }}
{{ include "raytrader.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: raytrader
{{- end }}

{{/* Selector labels: (dict "ctx" $ "component" "mlflow"). */}}
{{- define "raytrader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raytrader.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* The labels that select every pod of the release (NetworkPolicy default deny). */}}
{{- define "raytrader.releaseSelector" -}}
app.kubernetes.io/name: {{ include "raytrader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ---------------------------------------------------------------- images */}}

{{/* repo:tag or repo@digest of (dict "repository" .. "tag" .. "digest" ..). */}}
{{- define "raytrader.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{/* The raytrader image. */}}
{{- define "raytrader.image" -}}
{{- include "raytrader.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest) }}
{{- end }}

{{/* imagePullSecrets of a pod spec, or nothing: (dict "ctx" $ "indent" 6), called as
`{{- include "raytrader.imagePullSecrets" ... }}` right after the previous line. */}}
{{/* A component's image override (dict "ctx" $ "image" .Values.rayCluster.image): its repository
and tag default to image.repository and image.tag. */}}
{{- define "raytrader.overrideImage" -}}
{{- $v := .ctx.Values }}
{{- if or .image.repository .image.tag }}
{{- include "raytrader.imageRef" (dict "repository" (default $v.image.repository .image.repository) "tag" (default (default .ctx.Chart.AppVersion $v.image.tag) (toString .image.tag)) "digest" "") }}
{{- else }}
{{- include "raytrader.image" .ctx }}
{{- end }}
{{- end }}

{{- define "raytrader.imagePullSecrets" -}}
{{- with .ctx.Values.imagePullSecrets }}
{{- $out := "imagePullSecrets:" }}
{{- range . }}
{{- $out = printf "%s\n  - name: %s" $out . }}
{{- end }}
{{- $out | nindent (int $.indent) }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- security */}}

{{/* A container securityContext: (dict "ctx" $ "readOnly" true). */}}
{{- define "raytrader.containerSecurityContext" -}}
{{- $sc := deepCopy .ctx.Values.containerSecurityContext }}
{{- $_ := set $sc "readOnlyRootFilesystem" (ternary true false (eq (toString .readOnly) "true")) }}
{{- if .runAsUser }}
{{- $_ := set $sc "runAsUser" .runAsUser }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/* checkov skips that hold for every workload of the chart, each with its reason (checkov reads
`checkov.io/skipN: CKV_ID=reason` annotations of the object; the reason must not contain "="). */}}
{{- define "raytrader.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_15=Images are pinned by tag or digest; IfNotPresent lets kind-loaded and air-gapped images run (the pullPolicy values change it)
checkov.io/skip2: CKV_K8S_43=Digests are per registry and per build; every image takes an optional digest value (image.digest, <component>.image.digest)
checkov.io/skip3: CKV_K8S_40=The images run as their own non-root users (ray/appuser uid 1000, postgres/redis uid 999) that own their files; a remapped high UID breaks them
{{- end }}

{{/* ---------------------------------------------------------------- wiring */}}

{{/* MLflow tracking URI the clients use. */}}
{{- define "raytrader.mlflowUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%v" (include "raytrader.componentName" (dict "ctx" . "name" "mlflow")) .Values.mlflow.service.port }}
{{- else }}
{{- .Values.mlflow.external.url }}
{{- end }}
{{- end }}

{{/* Kafka bootstrap servers. */}}
{{- define "raytrader.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s:9092" (include "raytrader.componentName" (dict "ctx" . "name" "kafka")) }}
{{- else }}
{{- .Values.kafka.external.bootstrapServers }}
{{- end }}
{{- end }}

{{/* The external Kafka's client security (kafka.external.security) as raytrader.settings reads it:
RAYTRADER_KAFKA_* variables; the password and the CA are files of the kafka-client volume.
Nothing for the in-chart Kafka (PLAINTEXT inside the namespace, NetworkPolicy-restricted). */}}
{{- define "raytrader.kafkaSecured" -}}
{{- if and (not .Values.kafka.enabled) (ne .Values.kafka.external.security.protocol "PLAINTEXT") }}true{{ end }}
{{- end }}

{{- define "raytrader.kafkaClientEnv" -}}
{{- $sec := .Values.kafka.external.security }}
{{- if include "raytrader.kafkaSecured" . }}
{{- $sasl := hasPrefix "SASL_" $sec.protocol }}
{{- $tls := hasSuffix "SSL" $sec.protocol }}
- name: RAYTRADER_KAFKA_SECURITY_PROTOCOL
  value: {{ $sec.protocol | quote }}
{{- if $sasl }}
{{- if or (not $sec.saslUsername) (not $sec.saslPasswordSecret) }}
{{- fail (printf "kafka.external.security: protocol %s needs saslUsername and saslPasswordSecret" $sec.protocol) }}
{{- end }}
- name: RAYTRADER_KAFKA_SASL_MECHANISM
  value: {{ $sec.saslMechanism | quote }}
- name: RAYTRADER_KAFKA_SASL_USERNAME
  value: {{ $sec.saslUsername | quote }}
- name: RAYTRADER_KAFKA_SASL_PASSWORD_FILE
  value: /etc/raytrader/kafka/password
{{- end }}
{{- if and $tls $sec.caSecret }}
- name: RAYTRADER_KAFKA_SSL_CA_LOCATION
  value: /etc/raytrader/kafka/ca.crt
{{- end }}
{{- if $tls }}
- name: RAYTRADER_KAFKA_SSL_ENDPOINT_IDENTIFICATION
  value: {{ $sec.endpointIdentification | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "raytrader.kafkaClientMount" -}}
{{- if include "raytrader.kafkaSecured" . }}
- name: kafka-client
  mountPath: /etc/raytrader/kafka
  readOnly: true
{{- end }}
{{- end }}

{{- define "raytrader.kafkaClientVolume" -}}
{{- $sec := .Values.kafka.external.security }}
{{- if include "raytrader.kafkaSecured" . }}
- name: kafka-client
  projected:
    defaultMode: 0440
    sources:
      {{- if hasPrefix "SASL_" $sec.protocol }}
      - secret:
          name: {{ $sec.saslPasswordSecret }}
          items:
            - key: password
              path: password
      {{- end }}
      {{- if and (hasSuffix "SSL" $sec.protocol) $sec.caSecret }}
      - secret:
          name: {{ $sec.caSecret }}
          items:
            - key: ca.crt
              path: ca.crt
      {{- end }}
{{- end }}
{{- end }}

{{/* The in-chart PostgreSQL's Secret (keys postgres-password, password). */}}
{{- define "raytrader.postgresqlSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "postgresql")) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{/* An external PostgreSQL's Secret (keys mlflow-backend-url, feast-registry-url). */}}
{{- define "raytrader.externalDbSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "external-db")) .Values.postgresql.external.existingSecret }}
{{- end }}

{{/* The in-chart Redis's Secret (key password). */}}
{{- define "raytrader.redisSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "redis")) .Values.redis.auth.existingSecret }}
{{- end }}

{{/* An external Redis's Secret (key connection). */}}
{{- define "raytrader.externalRedisSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "external-redis")) .Values.redis.external.existingSecret }}
{{- end }}

{{/* In-chart database URLs: no password in them (libpq reads PGPASSWORD from secret-env). */}}
{{- define "raytrader.internalDbUrl" -}}
{{- printf "postgresql+psycopg2://%s@%s:5432/%s" .ctx.Values.postgresql.auth.username (include "raytrader.componentName" (dict "ctx" .ctx "name" "postgresql")) .database }}
{{- end }}

{{/* Secret with the decision service's tokens. */}}
{{- define "raytrader.apiTokenSecretName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "api-tokens")) .Values.inference.auth.existingSecret }}
{{- end }}

{{/* The shared data claim (Feast offline files, stream state). */}}
{{- define "raytrader.dataClaimName" -}}
{{- default (include "raytrader.componentName" (dict "ctx" . "name" "data")) .Values.data.existingClaim }}
{{- end }}

{{/* Does the chart need the shared data volume? */}}
{{- define "raytrader.needsData" -}}
{{- if and .Values.feast.enabled (or .Values.streamConsumer.enabled .Values.feast.applyJob.enabled (and .Values.ray.mountFeastData (or .Values.rayCluster.enabled .Values.jobs.train.enabled .Values.jobs.hyperopt.enabled))) }}true{{ end }}
{{- end }}

{{/* Where the secret-env volume puts the files that become environment variables. */}}
{{- define "raytrader.secretEnvDir" -}}/etc/raytrader/secret-env{{- end }}

{{/* The shell prefix that exports the secret-env files, then runs the rest of the command. */}}
{{- define "raytrader.secretEnvPrefix" -}}. /etc/raytrader/bin/secret-env.sh{{- end }}

{{/* A projected volume named secret-env: each Secret key becomes a file named after the variable
the app reads (secret-env.sh exports them), so no Secret value is ever written into a pod spec or
onto a command line. (dict "ctx" $ "redis" true "registry" true "mlflowBackend" false "s3" false)
In-chart PostgreSQL/Redis: PGPASSWORD (libpq) and RAYTRADER_REDIS_PASSWORD (secret-env.sh joins it
to RAYTRADER_REDIS_ADDRESS); external ones: the full URLs / connection string. */}}
{{- define "raytrader.secretEnvVolume" -}}
{{- $v := .ctx.Values }}
- name: secret-env
  projected:
    defaultMode: 0440
    sources:
      {{- if .redis }}
      {{- if $v.redis.enabled }}
      - secret:
          name: {{ include "raytrader.redisSecretName" .ctx }}
          items:
            - key: password
              path: RAYTRADER_REDIS_PASSWORD
      {{- else }}
      - secret:
          name: {{ include "raytrader.externalRedisSecretName" .ctx }}
          items:
            - key: connection
              path: RAYTRADER_REDIS_CONNECTION
      {{- end }}
      {{- end }}
      {{- if and $v.postgresql.enabled (or .registry .mlflowBackend) }}
      - secret:
          name: {{ include "raytrader.postgresqlSecretName" .ctx }}
          items:
            - key: password
              path: PGPASSWORD
      {{- end }}
      {{- if and (not $v.postgresql.enabled) (or .registry .mlflowBackend) }}
      - secret:
          name: {{ include "raytrader.externalDbSecretName" .ctx }}
          items:
            {{- if .registry }}
            - key: feast-registry-url
              path: RAYTRADER_FEAST_REGISTRY_URL
            {{- end }}
            {{- if .mlflowBackend }}
            - key: mlflow-backend-url
              path: MLFLOW_BACKEND_STORE_URI
            {{- end }}
      {{- end }}
      {{- if and .s3 (eq $v.mlflow.artifacts.type "s3") $v.mlflow.artifacts.s3.existingSecret }}
      - secret:
          name: {{ $v.mlflow.artifacts.s3.existingSecret }}
          items:
            - key: AWS_ACCESS_KEY_ID
              path: AWS_ACCESS_KEY_ID
            - key: AWS_SECRET_ACCESS_KEY
              path: AWS_SECRET_ACCESS_KEY
      {{- end }}
      {{- /* a projected volume needs one source: the script's own ConfigMap always exists */}}
      - configMap:
          name: {{ include "raytrader.componentName" (dict "ctx" .ctx "name" "bin") }}
          items:
            - key: secret-env.sh
              path: .keep
- name: bin
  configMap:
    name: {{ include "raytrader.componentName" (dict "ctx" .ctx "name" "bin") }}
    defaultMode: 0444
{{- end }}

{{- define "raytrader.secretEnvMounts" -}}
- name: secret-env
  mountPath: {{ include "raytrader.secretEnvDir" . }}
  readOnly: true
- name: bin
  mountPath: /etc/raytrader/bin
  readOnly: true
{{- end }}

{{/* How every raytrader process logs (raytrader.logs.configure_from_env). (dict "ctx" $) */}}
{{- define "raytrader.logEnv" -}}
- name: RAYTRADER_LOG_FORMAT
  value: {{ .ctx.Values.logging.format | quote }}
- name: RAYTRADER_LOG_LEVEL
  value: {{ .ctx.Values.logging.level | quote }}
{{- end }}

{{/* Environment of every raytrader process that talks to the stack (no secrets: those come from
secret-env). (dict "ctx" $) */}}
{{- define "raytrader.stackEnv" -}}
{{ include "raytrader.logEnv" . }}
# raytrader.settings: a missing setting is an error, never the local stack's 127.0.0.1 default
- name: RAYTRADER_MODE
  value: cluster
- name: MLFLOW_TRACKING_URI
  value: {{ include "raytrader.mlflowUrl" .ctx | quote }}
- name: RAYTRADER_MLFLOW_URI
  value: {{ include "raytrader.mlflowUrl" .ctx | quote }}
- name: RAYTRADER_KAFKA_BOOTSTRAP
  value: {{ include "raytrader.kafkaBootstrap" .ctx | quote }}
{{- if .ctx.Values.redis.enabled }}
- name: RAYTRADER_REDIS_ADDRESS
  value: {{ printf "%s:6379" (include "raytrader.componentName" (dict "ctx" .ctx "name" "redis")) | quote }}
{{- end }}
{{- if .ctx.Values.postgresql.enabled }}
- name: RAYTRADER_FEAST_REGISTRY_URL
  value: {{ include "raytrader.internalDbUrl" (dict "ctx" .ctx "database" .ctx.Values.postgresql.auth.feastDatabase) | quote }}
{{- end }}
{{- if .ctx.Values.feast.enabled }}
- name: RAYTRADER_FEAST_REPO
  value: /app/pipelines/feature_repo
- name: RAYTRADER_FEAST_DATA
  value: /var/lib/raytrader/feast
{{- if .ctx.Values.feast.server.enabled }}
- name: RAYTRADER_FEAST_URL
  value: {{ printf "http://%s:%v" (include "raytrader.componentName" (dict "ctx" .ctx "name" "feast")) .ctx.Values.feast.server.port | quote }}
{{- end }}
{{- end }}
- name: HOME
  value: /tmp/home
- name: NUMBA_CACHE_DIR
  value: /tmp/numba
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
- name: FEAST_USAGE
  value: "False"
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
{{- end }}

{{/* The Feast k8s profile mounted over the repo's feature_store.yaml (the `redis` profile every
raytrader caller loads). */}}
{{- define "raytrader.feastProfileMount" -}}
- name: feast-profile
  mountPath: /app/pipelines/feature_repo/feature_store.yaml
  subPath: feature_store.yaml
  readOnly: true
{{- end }}

{{- define "raytrader.feastProfileVolume" -}}
- name: feast-profile
  configMap:
    name: {{ include "raytrader.componentName" (dict "ctx" . "name" "feast") }}
    defaultMode: 0444
{{- end }}

{{/* The shared data volume: (dict "ctx" $ "mountPath" "/var/lib/raytrader"). */}}
{{- define "raytrader.dataVolume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "raytrader.dataClaimName" . }}
{{- end }}

{{/* Probe helper: GET a path on 127.0.0.1 with Python (for processes that bind loopback only). */}}
{{- define "raytrader.pythonHttpProbe" -}}
exec:
  command:
    - python
    - -c
    - {{ printf "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%v%s', timeout=4)" .port .path | quote }}
{{- end }}

{{/* A Secret value: read back from the live Secret (lookup) so an upgrade keeps it, else random
(`helm template` has no cluster and renders fresh values). (dict "ctx" $ "name" .. "key" .. "length" 32) */}}
{{- define "raytrader.keepOrGenerate" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- validation */}}

{{/* Checks the schema cannot express; every message names the value to change. */}}
{{- define "raytrader.validate" -}}
{{- $v := .Values }}
{{- $needsRay := or $v.rayCluster.enabled $v.inference.enabled $v.jobs.train.enabled $v.jobs.hyperopt.enabled }}
{{- if and $needsRay (not $v.kuberay.skipCapabilitiesCheck) (not (.Capabilities.APIVersions.Has "ray.io/v1")) }}
{{- fail "\n\nThe cluster does not serve the ray.io/v1 API: install the KubeRay operator (>= 1.5.1) first, e.g.\n  helm repo add kuberay https://ray-project.github.io/kuberay-helm/\n  helm install kuberay-operator kuberay/kuberay-operator --version 1.5.1 -n ray-system --create-namespace\nThis chart never installs KubeRay's CRDs. For offline rendering only: helm template --api-versions ray.io/v1 ... (or --set kuberay.skipCapabilitiesCheck=true)." }}
{{- end }}
{{- if and (not $v.mlflow.enabled) (not $v.mlflow.external.url) }}
{{- fail "mlflow.enabled=false needs mlflow.external.url (the tracking URI of your MLflow server)" }}
{{- end }}
{{- if and $v.mlflow.enabled (eq $v.mlflow.artifacts.type "s3") (not $v.mlflow.artifacts.s3.destination) }}
{{- fail "mlflow.artifacts.type=s3 needs mlflow.artifacts.s3.destination (e.g. s3://mlflow/artifacts)" }}
{{- end }}
{{- if and $v.mlflow.enabled (gt (int $v.mlflow.replicas) 1) (eq $v.mlflow.artifacts.type "pvc") (not (has "ReadWriteMany" $v.mlflow.artifacts.pvc.accessModes)) }}
{{- fail "mlflow.replicas > 1 with a PVC artifact store needs mlflow.artifacts.pvc.accessModes [ReadWriteMany] (or an S3 store)" }}
{{- end }}
{{- if not $v.postgresql.enabled }}
{{- if and (not $v.postgresql.external.existingSecret) (or (and $v.mlflow.enabled (not $v.postgresql.external.mlflowBackendUrl)) (and $v.feast.enabled (not $v.postgresql.external.feastRegistryUrl))) }}
{{- fail "postgresql.enabled=false needs postgresql.external.existingSecret, or postgresql.external.mlflowBackendUrl (when mlflow.enabled) and postgresql.external.feastRegistryUrl (when feast.enabled)" }}
{{- end }}
{{- end }}
{{- if and (not $v.kafka.enabled) (not $v.kafka.external.bootstrapServers) }}
{{- fail "kafka.enabled=false needs kafka.external.bootstrapServers (host:port[,host:port])" }}
{{- end }}
{{- if and (not $v.redis.enabled) (not $v.redis.external.connection) (not $v.redis.external.existingSecret) }}
{{- fail "redis.enabled=false needs redis.external.connection (Feast's host:port[,password=...][,ssl=true]) or redis.external.existingSecret" }}
{{- end }}
{{- if and $v.streamConsumer.enabled (not $v.feast.enabled) }}
{{- fail "streamConsumer.enabled needs feast.enabled (the consumer writes Feast's online and offline stores)" }}
{{- end }}
{{- if and $v.inference.enabled (not $v.feast.enabled) }}
{{- fail "inference.enabled needs feast.enabled (the decision service reads Feast's online store)" }}
{{- end }}
{{- if and $v.dashboard.enabled (not $v.experimentApi.enabled) }}
{{- fail "dashboard.enabled needs experimentApi.enabled (the dashboard reads the experiment API); set dashboard.enabled=false too" }}
{{- end }}
{{- if and $v.experimentApi.enabled (not $v.postgresql.enabled) (not $v.experimentApi.database.existingSecret) (not $v.experimentApi.database.externalUrl) }}
{{- fail "experimentApi.enabled with postgresql.enabled=false needs experimentApi.database.externalUrl (postgresql+psycopg2://user:pass@host:5432/raytrader) or experimentApi.database.existingSecret" }}
{{- end }}
{{- range $c := $v.streamConsumer.consumers }}
{{- $topic := printf "bars.%s" $c.timeframe }}
{{- $parts := index $v.kafka.topics $topic }}
{{- if not $parts }}
{{- fail (printf "streamConsumer.consumers: timeframe %s reads topic %s, which kafka.topics does not list" $c.timeframe $topic) }}
{{- end }}
{{- if gt (int $c.replicas) (int $parts) }}
{{- fail (printf "streamConsumer.consumers: timeframe %s has %v replicas but topic %s has %v partitions; replicas beyond the partitions would idle (raise kafka.topics.%s or lower the replicas)" $c.timeframe $c.replicas $topic $parts $topic) }}
{{- end }}
{{- end }}
{{- range $name := list "train" "hyperopt" }}
{{- $job := index $v.jobs $name }}
{{- if and $job.enabled (eq $job.cluster "shared") (not $v.rayCluster.enabled) }}
{{- fail (printf "jobs.%s.cluster=shared submits to the standalone RayCluster: set rayCluster.enabled=true (or jobs.%s.cluster=dedicated)" $name $name) }}
{{- end }}
{{- end }}
{{- range $where, $spec := dict "rayCluster" $v.rayCluster "inference.rayCluster" $v.inference.rayCluster }}
{{- range $g := $spec.workerGroups }}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
{{- fail (printf "%s.workerGroups[%s]: minReplicas %v > maxReplicas %v" $where $g.name $g.minReplicas $g.maxReplicas) }}
{{- end }}
{{- if or (lt (int $g.replicas) (int $g.minReplicas)) (gt (int $g.replicas) (int $g.maxReplicas)) }}
{{- fail (printf "%s.workerGroups[%s]: replicas %v must lie within minReplicas %v and maxReplicas %v" $where $g.name $g.replicas $g.minReplicas $g.maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- if gt (int $v.inference.autoscaling.minReplicas) (int $v.inference.autoscaling.maxReplicas) }}
{{- fail (printf "inference.autoscaling: minReplicas %v > maxReplicas %v" $v.inference.autoscaling.minReplicas $v.inference.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $v.kafka.enabled (gt (int $v.kafka.replicationFactor) (int $v.kafka.replicas)) }}
{{- fail (printf "kafka.replicationFactor %v exceeds kafka.replicas %v" $v.kafka.replicationFactor $v.kafka.replicas) }}
{{- end }}
{{- end }}
