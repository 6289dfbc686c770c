"""Kafka-ML services, one folder each."""
