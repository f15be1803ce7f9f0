"""The SDK raises fleet errors, never aiokafka's: a broker that cannot be reached, or one
that does not take a request, is a ``BrokerError`` that says whether it passes by itself."""

from __future__ import annotations

import socket

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from contracts.errors import FleetError
from producer_sdk import BatchClient, BrokerError, FleetClient
from producer_sdk.errors import broker_errors
from transport.connection import KafkaConnection


async def test_a_client_of_an_unreachable_broker_gets_a_retryable_fleet_error() -> None:
    with socket.socket() as nobody:  # bound, not listening: every connection is refused
        nobody.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{nobody.getsockname()[1]}"
        with pytest.raises(BrokerError, match="could not open the reply topic") as raised:
            async with FleetClient(address):
                pass
    assert isinstance(raised.value, FleetError)
    assert raised.value.retryable
    assert isinstance(raised.value.cause, KafkaConnectionError)


async def test_a_batch_client_of_an_unreachable_broker_gets_a_retryable_fleet_error() -> None:
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        connection = KafkaConnection(bootstrap_servers=f"127.0.0.1:{nobody.getsockname()[1]}")
        with pytest.raises(BrokerError, match="connecting the batch client") as raised:
            async with BatchClient(connection):
                pass
    assert raised.value.retryable
    assert isinstance(raised.value.cause, KafkaConnectionError)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (NotLeaderForPartitionError(), True),  # a leader moving, a broker restarting
        (LeaderNotAvailableError(), True),
        (TopicAuthorizationFailedError(), False),
        (MessageSizeTooLargeError(), False),
    ],
)
def test_kafkas_errors_become_broker_errors_that_say_whether_they_pass(
    error: Exception, retryable: bool
) -> None:
    with (
        pytest.raises(BrokerError, match=type(error).__name__) as raised,
        broker_errors("sending"),
    ):
        raise error
    assert raised.value.retryable is retryable
    assert raised.value.cause is error
