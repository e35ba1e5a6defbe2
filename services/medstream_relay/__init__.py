"""The outbox relay service: publishes every service's outbox rows to Kafka."""
