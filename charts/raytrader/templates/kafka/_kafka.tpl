{{/* The Kafka StatefulSet's name, its headless Service and one node's FQDN. */}}
{{- define "raytrader.kafkaName" -}}
{{- include "raytrader.componentName" (dict "ctx" . "name" "kafka") }}
{{- end }}

{{- define "raytrader.kafkaHeadless" -}}
{{- printf "%s-headless" (include "raytrader.kafkaName" .) }}
{{- end }}

{{/* KRaft cluster id: kafka.clusterId, else base64url of 16 bytes derived from the namespace and
release (stable across upgrades, different between releases). */}}
{{- define "raytrader.kafkaClusterId" -}}
{{- if .Values.kafka.clusterId }}
{{- .Values.kafka.clusterId }}
{{- else }}
{{- printf "%s/%s" .Release.Namespace .Release.Name | sha256sum | trunc 16 | b64enc | trimSuffix "==" | replace "+" "-" | replace "/" "_" }}
{{- end }}
{{- end }}

{{/* Replication factor of the topics: kafka.replicationFactor, else min(3, nodes). */}}
{{- define "raytrader.kafkaReplication" -}}
{{- if and .Values.kafka.enabled (gt (int .Values.kafka.replicationFactor) 0) }}
{{- .Values.kafka.replicationFactor }}
{{- else if .Values.kafka.enabled }}
{{- min 3 (int .Values.kafka.replicas) }}
{{- else }}
{{- max 1 (int .Values.kafka.replicationFactor) }}
{{- end }}
{{- end }}

{{/* The Kafka ConfigMap's data; the StatefulSet hashes it to restart on a change. */}}
{{- define "raytrader.kafkaConfigData" -}}
{{- $name := include "raytrader.kafkaName" . }}
{{- $headless := include "raytrader.kafkaHeadless" . }}
{{- $domain := printf "%s.%s.svc.%s" $headless .Release.Namespace .Values.clusterDomain }}
{{- $voters := list }}
{{- range $i := until (int .Values.kafka.replicas) }}
{{- $voters = append $voters (printf "%d@%s-%d.%s:9093" $i $name $i $domain) }}
{{- end }}
{{- $rf := min 3 (int .Values.kafka.replicas) }}
# Every node is a KRaft broker + controller; @NODE_ID@ and @POD_NAME@ are filled in by start.sh.
server.properties: |
  process.roles=broker,controller
  node.id=@NODE_ID@
  controller.quorum.voters={{ join "," $voters }}
  listeners=PLAINTEXT://:9092,CONTROLLER://:9093
  advertised.listeners=PLAINTEXT://@POD_NAME@.{{ $domain }}:9092
  controller.listener.names=CONTROLLER
  inter.broker.listener.name=PLAINTEXT
  listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
  log.dirs=/var/lib/kafka/data/logs
  auto.create.topics.enable=false
  num.partitions=1
  default.replication.factor={{ $rf }}
  offsets.topic.replication.factor={{ $rf }}
  transaction.state.log.replication.factor={{ $rf }}
  transaction.state.log.min.isr={{ min 2 $rf }}
  min.insync.replicas={{ ternary 2 1 (ge $rf 3) }}
  group.initial.rebalance.delay.ms={{ ternary 0 3000 (eq (int .Values.kafka.replicas) 1) }}
  {{- range $k, $val := .Values.kafka.config }}
  {{ $k }}={{ $val }}
  {{- end }}
# Console logging only (the root filesystem is read-only).
log4j2.yaml: |
  Configuration:
    Appenders:
      Console:
        name: STDOUT
        PatternLayout:
          pattern: "[%d] %p %m (%c)%n"
    Loggers:
      Root:
        level: INFO
        AppenderRef:
          - ref: STDOUT
      Logger:
        - name: org.apache.kafka.controller
          level: INFO
        - name: kafka.request.logger
          level: WARN
start.sh: |
  #!/bin/bash
  # Renders this node's server.properties into /tmp, formats the log dir once (a formatted dir is
  # left alone), then execs the broker (PID 1: it gets the pod's SIGTERM and shuts down cleanly).
  set -euo pipefail
  node_id=${POD_NAME##*-}
  template=$(</etc/kafka-config/server.properties)
  template=${template//@NODE_ID@/$node_id}
  printf '%s\n' "${template//@POD_NAME@/$POD_NAME}" >/tmp/server.properties
  mkdir -p /var/lib/kafka/data/logs
  /opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
    --cluster-id "$KAFKA_CLUSTER_ID" --config /tmp/server.properties
  exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties
{{- end }}
