"""Streaming: bar messages on Kafka, producers, and the feature consumer that feeds Feast."""
