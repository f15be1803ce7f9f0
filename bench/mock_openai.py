"""A mock OpenAI server that answers every ``POST /v1/chat/completions`` at once with the same
small ``chat.completion``: the model behind LiteLLM's proxy when bench/gateway_overhead.py
measures what the proxy adds (the fleet's no-op worker plays that part for the fleet).

``python -m bench.mock_openai --port P`` prints ``BENCH-READY`` once it listens; raw HTTP/1.1
over asyncio streams, kept alive, so that it costs little beside what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

from bench.common import READY_LINE

ANSWER = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "noop",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(ANSWER)}\r\n\r\n".encode()
    + ANSWER
)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if b"\r\ncontent-length:" in head:
                length = int(head.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
            writer.write(RESPONSE)
    writer.close()


async def serve(port: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        print(READY_LINE, flush=True)
        await stopping.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
