"""Shared fixtures. The Kafka broker fixture lives in tests/broker.py."""
