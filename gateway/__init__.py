"""The OpenAI-compatible HTTP gateway: OpenAI requests in, fleet jobs through Kafka, OpenAI
responses out (docs/decisions/0035-http-gateway.md)."""

from gateway.server import Gateway

__all__ = ["Gateway"]
