{{/*
The RayClusterSpec shared by the standalone RayCluster, the jobs' own clusters and the RayService:
(dict "ctx" $ "spec" <values with head/workerGroups/autoscaling> "component" "ray" "role" "ray"
      "headSa" .. "workerSa" .. "serve" false "mountData" true "jobsConfig" true)

* every container passes Pod Security Standards "restricted"; the root filesystem is read-only and
  /tmp, /tmp/ray (the `ray-logs` volume KubeRay shares with the autoscaler sidecar), HOME and
  /app/runs are volumes (KubeRay adds /dev/shm);
* `args` holds only the secret-env prefix: KubeRay runs "<args> && ulimit ...; ray start ...", so the
  Secret-backed variables reach `ray start` and every Ray worker process it spawns;
* the head's dashboard, GCS and client ports stay behind a ClusterIP service and the NetworkPolicies.
*/}}
{{- define "raytrader.rayClusterSpec" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- $spec := .spec -}}
rayVersion: {{ $v.ray.rayVersion | quote }}
{{- if eq $v.ray.authMode "token" }}
authOptions:
  mode: token
{{- end }}
enableInTreeAutoscaling: {{ $spec.autoscaling.enabled }}
{{- if $spec.autoscaling.enabled }}
autoscalerOptions:
  upscalingMode: {{ $spec.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $spec.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  resources:
    {{- toYaml $spec.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- include "raytrader.containerSecurityContext" (dict "ctx" $ctx "readOnly" true) | nindent 4 }}
  env:
    - name: HOME
      value: /tmp
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
headGroupSpec:
  serviceType: {{ $v.ray.headServiceType }}
  rayStartParams:
    {{- include "raytrader.rayStartParams" $spec.head.rayStartParams | nindent 4 }}
  template:
    {{- include "raytrader.rayPodTemplate" (merge (dict "node" "head" "group" $spec.head "sa" .headSa "automount" $spec.autoscaling.enabled) .) | nindent 4 }}
{{- with $spec.workerGroups }}
workerGroupSpecs:
  {{- range $g := . }}
  - groupName: {{ $g.name }}
    replicas: {{ $g.replicas }}
    minReplicas: {{ $g.minReplicas }}
    maxReplicas: {{ $g.maxReplicas }}
    rayStartParams:
      {{- include "raytrader.rayStartParams" $g.rayStartParams | nindent 6 }}
    template:
      {{- include "raytrader.rayPodTemplate" (merge (dict "node" "worker" "group" $g "sa" $.workerSa "automount" false) $) | nindent 6 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* One Ray pod template (head or worker); the parameters of raytrader.rayClusterSpec plus
"node" (head|worker), "group" (the head or worker group values), "sa", "automount". */}}
{{- define "raytrader.rayPodTemplate" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- $monitors := include "raytrader.monitorsRendered" $ctx -}}
metadata:
  labels:
    {{- include "raytrader.labels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
    raytrader.io/ray-cluster: {{ .role }}
    raytrader.io/ray-node: {{ .node }}
  annotations:
    {{- if and $v.monitoring.scrapeAnnotations (not $monitors) }}
    prometheus.io/scrape: "true"
    prometheus.io/port: "8080"
    prometheus.io/path: /metrics
    {{- end }}
    checksum/feast-profile: {{ include "raytrader.feastProfileData" $ctx | sha256sum }}
    {{- with .group.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ .sa }}
  automountServiceAccountToken: {{ .automount }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- include "raytrader.imagePullSecrets" (dict "ctx" $ctx "indent" 2) }}
  {{- with .group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ printf "ray-%s" .node }}
      image: {{ include "raytrader.overrideImage" (dict "ctx" $ctx "image" (ternary $v.inference.image $v.rayCluster.image (eq .role "inference"))) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      # KubeRay appends "&& ulimit -n 65536; ray start ..." to these args
      args:
        - {{ include "raytrader.secretEnvPrefix" $ctx | quote }}
      ports:
        {{- if eq .node "head" }}
        - name: gcs-server
          containerPort: 6379
        - name: dashboard
          containerPort: 8265
        - name: client
          containerPort: 10001
        {{- end }}
        - name: metrics
          containerPort: 8080
        {{- if .serve }}
        - name: serve
          containerPort: {{ $v.inference.port }}
        {{- end }}
      env:
        {{- include "raytrader.stackEnv" (dict "ctx" $ctx) | nindent 8 }}
        {{- if .serve }}
        {{- if $v.inference.throughputOptimized }}
        - name: RAY_SERVE_THROUGHPUT_OPTIMIZED
          value: "1"
        {{- end }}
        - name: RAYTRADER_API_TOKEN_FILE
          value: /etc/raytrader/api/api-token
        {{- if $v.inference.auth.adminToken }}
        - name: RAYTRADER_ADMIN_TOKEN_FILE
          value: /etc/raytrader/api/admin-token
        {{- end }}
        {{- end }}
        {{- with $v.ray.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml .group.resources | nindent 8 }}
      securityContext:
        {{- include "raytrader.containerSecurityContext" (dict "ctx" $ctx "readOnly" $v.ray.readOnlyRootFilesystem) | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: ray-logs
          mountPath: /tmp/ray
        - name: runs
          mountPath: /app/runs
        - name: data
          mountPath: /var/lib/raytrader
        {{- include "raytrader.secretEnvMounts" $ctx | nindent 8 }}
        {{- if $v.feast.enabled }}
        {{- include "raytrader.feastProfileMount" $ctx | nindent 8 }}
        {{- end }}
        {{- if and .jobsConfig (eq .node "head") }}
        - name: jobs-config
          mountPath: /etc/raytrader/jobs
          readOnly: true
        {{- end }}
        {{- if .serve }}
        - name: api-tokens
          mountPath: /etc/raytrader/api
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    - name: ray-logs
      emptyDir:
        sizeLimit: {{ $v.ray.tmpSizeLimit }}
    {{- if $v.ray.runs.existingClaim }}
    - name: runs
      persistentVolumeClaim:
        claimName: {{ $v.ray.runs.existingClaim }}
    {{- else }}
    - name: runs
      emptyDir:
        sizeLimit: {{ $v.ray.runs.sizeLimit }}
    {{- end }}
    {{- if and .mountData (include "raytrader.needsData" $ctx) }}
    {{- include "raytrader.dataVolume" $ctx | nindent 4 }}
    {{- else }}
    # Feast's data dir must exist; the decision service reads only the online store and the registry
    - name: data
      emptyDir:
        sizeLimit: 1Gi
    {{- end }}
    {{- include "raytrader.secretEnvVolume" (dict "ctx" $ctx "redis" $v.feast.enabled "registry" $v.feast.enabled) | nindent 4 }}
    {{- if $v.feast.enabled }}
    {{- include "raytrader.feastProfileVolume" $ctx | nindent 4 }}
    {{- end }}
    {{- if and .jobsConfig (eq .node "head") }}
    # optional: the ConfigMap exists while a job is enabled, and kubelet refreshes the files
    - name: jobs-config
      configMap:
        name: {{ include "raytrader.componentName" (dict "ctx" $ctx "name" "jobs") }}
        defaultMode: 0444
        optional: true
    {{- end }}
    {{- if .serve }}
    - name: api-tokens
      secret:
        secretName: {{ include "raytrader.apiTokenSecretName" $ctx }}
        defaultMode: 0440
    {{- end }}
{{- end }}

{{/* "true" when ServiceMonitor/PodMonitor objects are rendered. */}}
{{- define "raytrader.monitorsRendered" -}}
{{- if and .Values.monitoring.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/* rayStartParams as a map of strings (KubeRay's type), `{}` when there are none. */}}
{{- define "raytrader.rayStartParams" -}}
{{- $out := dict }}
{{- range $k, $val := . }}
{{- $_ := set $out $k (toString $val) }}
{{- end }}
{{- toYaml $out }}
{{- end }}
