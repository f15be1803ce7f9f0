"""The raw aiokafka responder: the floor under the fleet's no-op round trip.

``python -m bench.raw_responder --topic T`` joins a consumer group on ``T`` and answers
every record with ``b"ok"`` on the topic named in its ``reply-to`` header, keyed by the
record's key (the request id). No decoding, no ledger, no tracing: only Kafka's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench.common import BOOTSTRAP, READY_LINE

# The same producer settings as the fleet's worker (workers/app.py): a fair floor.
PRODUCER_SETTINGS = {"linger_ms": 0, "acks": "all", "enable_idempotence": True}
CONSUMER_SETTINGS = {"enable_auto_commit": True, "auto_commit_interval_ms": 1000}


class _Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            print(READY_LINE, flush=True)


async def serve(topic: str, group: str) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **PRODUCER_SETTINGS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        **CONSUMER_SETTINGS,
    )
    await producer.start()
    await consumer.start()
    try:
        consumer.subscribe([topic], listener=_Ready())
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=256)
            pending = []
            for records in batches.values():
                for record in records:
                    reply_to = next(v for k, v in record.headers if k == "reply-to").decode()
                    pending.append(await producer.send(reply_to, b"ok", key=record.key))
            if pending:
                await asyncio.gather(*pending)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.topic, f"{args.topic}.responders"))


if __name__ == "__main__":
    main()
