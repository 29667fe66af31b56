"""Kafka: the producer, the consumer engine, the outbox relay, dead letters."""
