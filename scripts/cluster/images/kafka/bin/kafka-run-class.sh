#!/bin/bash
# kafka-run-class.sh of the local stand-in for apache/kafka (scripts/cluster/build-service-images.sh
# builds it from Maven Central's jars: Apache's own scripts ship only in the release tarball). Our
# own minimal script with the environment contract of Apache's for a release layout:
#
#   kafka-run-class.sh [-name NAME] [-loggc] CLASS [ARGS...]
#
# class path $CLASSPATH + /opt/kafka/libs/*; java from $JAVA_HOME, else PATH; the JVM options, in
# Apache's order: KAFKA_HEAP_OPTS (default -Xmx256M), KAFKA_JVM_PERFORMANCE_OPTS (default G1, as
# Apache's), KAFKA_GC_LOG_OPTS (with -loggc: $LOG_DIR/NAME-gc.log, 10 files of 100 MB at most),
# KAFKA_JMX_OPTS (+ the port of JMX_PORT), -Dkafka.logs.dir=$LOG_DIR and KAFKA_LOG4J_OPTS (default:
# config/tools-log4j2.yaml, console; when it is set, LOG_DIR is created), then KAFKA_OPTS.
# LOG_DIR defaults to /opt/kafka/logs (read-only in the chart, which sets LOG_DIR=/tmp/kafka-logs).
# Not supported: -daemon, KAFKA_DEBUG.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-name servicename] [-loggc] classname [opts]" >&2
  exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)

name="" loggc=false
while [ $# -gt 0 ]; do
  case $1 in
    -name) name=$2; shift 2 ;;
    -loggc) loggc=true; shift ;;
    -daemon) echo "$0: -daemon is not supported by this image; run in the foreground" >&2; exit 1 ;;
    *) break ;;
  esac
done

CLASSPATH="${CLASSPATH:+$CLASSPATH:}$base_dir/libs/*"
LOG_DIR=${LOG_DIR:-$base_dir/logs}
if [ -z "${KAFKA_LOG4J_OPTS:-}" ]; then
  KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml"
else
  mkdir -p "$LOG_DIR"
fi
KAFKA_LOG4J_OPTS="-Dkafka.logs.dir=$LOG_DIR $KAFKA_LOG4J_OPTS"
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256M}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
if [ "$loggc" = true ] && [ -z "${KAFKA_GC_LOG_OPTS:-}" ]; then
  KAFKA_GC_LOG_OPTS="-Xlog:gc*:file=$LOG_DIR/${name}-gc.log:time,tags:filecount=10,filesize=100M"
fi
KAFKA_JMX_OPTS=${KAFKA_JMX_OPTS:-}
if [ -n "${JMX_PORT:-}" ]; then
  KAFKA_JMX_OPTS="${KAFKA_JMX_OPTS:--Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false} -Dcom.sun.management.jmxremote.port=$JMX_PORT"
fi
JAVA=java
[ -z "${JAVA_HOME:-}" ] || JAVA=$JAVA_HOME/bin/java

# the *_OPTS are lists of options: split on spaces (as Apache's scripts do), never globbed
set -f
# shellcheck disable=SC2086
exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_GC_LOG_OPTS:-} $KAFKA_JMX_OPTS \
  $KAFKA_LOG4J_OPTS -cp "$CLASSPATH" ${KAFKA_OPTS:-} "$@"
