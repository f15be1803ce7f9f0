"""The Kafka transport both sides stand on: connection and security, topic admin and
topology, publishing, trace propagation, commit tracking and the one consume loop.

``producer_sdk`` (the callers' side) and ``workers`` (the fleet's side) import it; it
imports only ``contracts`` and aiokafka.
"""
