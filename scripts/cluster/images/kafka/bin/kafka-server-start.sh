#!/bin/bash
# kafka-server-start.sh of the local stand-in for apache/kafka (see kafka-run-class.sh): a KRaft
# node in the foreground, `kafka.Kafka server.properties [--override property=value]*`, with
# Apache's defaults: KAFKA_LOG4J_OPTS -> config/log4j2.yaml, KAFKA_HEAP_OPTS -> -Xmx1G -Xms1G,
# EXTRA_ARGS -> "-name kafkaServer -loggc" (GC log in $LOG_DIR/kafkaServer-gc.log).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "USAGE: $0 server.properties [--override property=value]*" >&2
  exit 1
fi
base_dir=$(dirname "$0")
export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/../config/log4j2.yaml}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
EXTRA_ARGS=${EXTRA_ARGS-'-name kafkaServer -loggc'}
# shellcheck disable=SC2086
exec "$base_dir/kafka-run-class.sh" $EXTRA_ARGS kafka.Kafka "$@"
