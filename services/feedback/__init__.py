"""Feedback service: durable, idempotent event ingestion and the consumer deriving features."""
