#!/bin/bash
# kafka-storage.sh of the local stand-in for apache/kafka (see kafka-run-class.sh): Kafka's
# StorageTool (format, info, random-uuid, ...), e.g. the chart's start.sh runs
# `kafka-storage.sh format --ignore-formatted --cluster-id ID --config FILE`.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
