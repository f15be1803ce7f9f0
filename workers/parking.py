"""Parking a record: a copy on its kind's park topic, due back on its lane after a short
fixed delay (docs/decisions/0045-parking-a-floods-excess.md).

A worker parks the records of a tenant beyond its share of a full lane's window, so that
the log moves on to the other tenants' records behind them. The copy carries what the
retry tiers' copies carry for the way back (a not-before time and the lane), so the same
forwarder (``workers/retry.py``'s RedeliveryForwarder, reading the park topic) brings it
back. It is not a retry: its retry count and attempt stay as they were (the job never
started), and its tenant and cost headers travel with it.
"""

from __future__ import annotations

from contracts.names import Header, Lane, parked_topic
from transport.publisher import Publisher
from transport.records import Record
from workers.retry import way_back

# The headers a parked copy has of its own; the rest are the record's.
_OWN_HEADERS = (Header.RETRY_NOT_BEFORE_MS, Header.RETRY_LANE)


class ParkingLot:
    def __init__(self, producer: Publisher, kind: str, namespace: str, delay_s: float) -> None:
        self._producer = producer
        self.topic = parked_topic(kind, namespace)
        self.delay_s = delay_s

    async def park(self, record: Record, lane: Lane) -> None:
        """Send the copy and wait until the broker has it; Kafka's error when it does not
        take it (the record must then not be marked finished)."""
        headers = [(k, bytes(v)) for k, v in record.headers if k not in _OWN_HEADERS]
        headers += way_back(self.delay_s, lane)
        await self._producer.send_and_wait(
            self.topic, record.value, key=record.key, headers=headers
        )
