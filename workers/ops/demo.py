"""`fleet demo`: start the local fleet and send each kind of job through it, for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from contracts.names import BATCH_KIND, WORKER_KINDS
from contracts.speech import SPEECH_MAX_INPUT_CHARS
from contracts.vectors import VectorRecord
from producer_sdk import (
    BatchClient,
    FleetClient,
    KafkaSecurity,
    SpeechAudio,
    SpeechJoiner,
    StreamRestarted,
)
from workers.ops.batch_progress import BatchProgress
from workers.ops.local_fleet import (
    LOG_DIR,
    WATCH_INTERVAL_S,
    LocalWorker,
    WorkerExited,
    first_exited,
    metrics_url,
    model_threads_env,
    stop_all,
    wait_ready,
)
from workers.ops.terminal import print_stream
from workers.settings import load_settings

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
RERANK_MODEL = "all-minilm-l6-v2-biencoder"
WHISPER_MODEL = "whisper-tiny.en"
SPEECH_MODEL = "espeak-ng"
# Where the demo writes the answer it speaks: beside the workers' logs.
SPOKEN_ANSWER = LOG_DIR.parent / "demo-answer.wav"
# Made once with espeak-ng and sox, so that the demo needs no system package.
SPEECH_SAMPLE = Path(__file__).parent / "assets" / "demo-speech.wav"

DOCS = [
    ("kafka", "Apache Kafka is a distributed, append-only log of events."),
    ("redis", "Redis keeps data structures in memory and answers in microseconds."),
    ("whisper", "Whisper turns recorded speech into text."),
    ("minilm", "MiniLM maps sentences to 384-dimensional vectors."),
    ("bread", "Sourdough bread rises slowly thanks to wild yeast."),
]


def run_demo(
    prompt: str, bootstrap_servers: str, namespace: str, base_port: int | None, max_tokens: int
) -> int:
    """``base_port``: fixed health ports base_port, base_port + 1, ... in the order of
    WORKER_KINDS; None: ports the OS picks."""
    print(f"[fleet] starting one worker per kind (logs in {LOG_DIR})", file=sys.stderr)
    env = {
        "FLEET_BOOTSTRAP_SERVERS": bootstrap_servers,
        "FLEET_NAMESPACE": namespace,
        **model_threads_env(WORKER_KINDS, load_settings()),
    }
    ports = {} if base_port is None else {k: base_port + i for i, k in enumerate(WORKER_KINDS)}
    workers: dict[str, LocalWorker] = {}

    def start(*kinds: str) -> None:
        workers.update({kind: LocalWorker(kind, ports.get(kind), env=env) for kind in kinds})

    tour = _tour(prompt, bootstrap_servers, namespace, max_tokens, workers, start)
    try:
        asyncio.run(_watched(tour, workers))
        return 0
    finally:
        stop_all(list(workers.values()))


async def _watched(tour: Coroutine[Any, Any, None], workers: dict[str, LocalWorker]) -> None:
    """Run the tour while watching the workers (those started so far): one that exits ends
    the demo at once (a caller would otherwise wait for its deadline) with its last words."""
    task = asyncio.create_task(tour)
    while not task.done():
        if (dead := first_exited(list(workers.values()))) is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise WorkerExited(dead.exit_report())
        await asyncio.wait([task], timeout=WATCH_INTERVAL_S)
    await task


async def _tour(
    prompt: str,
    bootstrap_servers: str,
    namespace: str,
    max_tokens: int,
    workers: dict[str, LocalWorker],
    start: Callable[..., None],
) -> None:
    """One job of each kind. The generate worker starts first, alone on the cores, so that
    the answer streams sooner; the others load their models while it streams."""

    async def ready(*kinds: str) -> None:
        await asyncio.to_thread(wait_ready, [workers[kind] for kind in kinds])
        for kind in kinds:
            port = workers[kind].port  # known: the worker wrote it before it could be ready
            assert port is not None
            print(f"[fleet] {kind} worker ready: {metrics_url(port)}", file=sys.stderr)
        print(file=sys.stderr, flush=True)

    # The default voice is the espeak-ng program: without it, no speech worker (and no
    # failed start ending the tour).
    speaks = shutil.which("espeak-ng") is not None
    start("generate")
    await ready("generate")
    start(*(kind for kind in WORKER_KINDS if kind != "generate" and (speaks or kind != "speech")))
    security = KafkaSecurity.from_env()  # as the workers it started read it
    async with FleetClient(
        bootstrap_servers, security=security, namespace=namespace, tenant="demo"
    ) as fleet:
        answer = await _generate(fleet, prompt, max_tokens)
        await ready("embed", "vectors")
        await _embed_and_search(fleet)
        await ready("rerank")
        await _rerank(fleet)
        await ready(BATCH_KIND)
        await _batch(fleet)
        await ready("transcribe")
        await _transcribe(fleet)
        if speaks:
            await ready("speech")
            await _speak(fleet, answer or prompt)
        else:
            print("== speech: skipped, espeak-ng is not installed "
                  "(deploy/local/system-packages.sh)")  # fmt: skip


async def _generate(fleet: FleetClient, prompt: str, max_tokens: int) -> str:
    print(f"== generate ({CHAT_MODEL}, streamed)\n> {prompt}\n")
    return await print_stream(
        fleet.stream_generate(prompt, model=CHAT_MODEL, max_tokens=max_tokens, temperature=0.2)
    )


async def _embed_and_search(fleet: FleetClient) -> None:
    collection = f"demo_{int(time.time())}"
    print(f"== embed + vectors ({EMBED_MODEL}, collection {collection})")
    records = [VectorRecord(id=doc_id, text=text) for doc_id, text in DOCS]
    written = await fleet.upsert(collection, records, embed_model=EMBED_MODEL)
    print(f"upserted {written.upserted} documents (embedded by the embed model on the worker)")
    for question in ("Which system keeps a log of events?", "How is bread made?"):
        hits = await fleet.query(collection, text=question, top_k=2, embed_model=EMBED_MODEL)
        best = ", ".join(f"{m.id} ({m.score:.2f})" for m in hits.matches or [])
        print(f"? {question} -> {best}")
    vectors = await fleet.embed(["a cat on a mat", "a kitten on a rug"], model=EMBED_MODEL)
    similarity = sum(a * b for a, b in zip(*vectors.vectors, strict=True))
    print(f"cosine('a cat on a mat', 'a kitten on a rug') = {similarity:.3f}\n")
    await fleet.delete(collection, [doc_id for doc_id, _ in DOCS])


async def _rerank(fleet: FleetClient) -> None:
    question = "Which system keeps a log of events?"
    print(f"== rerank ({RERANK_MODEL})\n? {question}")
    ranked = await fleet.rerank(
        question, [text for _, text in DOCS], model=RERANK_MODEL, top_n=3, return_documents=True
    )
    for place, result in enumerate(ranked.results, 1):
        print(f"{place}. {result.relevance_score:.2f}  {result.document}")
    print()


async def _batch(fleet: FleetClient) -> None:
    """A small batch the fleet owns: submitted, followed, downloaded in OpenAI's format."""
    print(f"== batch ({EMBED_MODEL}, through the batch coordinator)")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "docs.jsonl"
        corpus.write_text("".join(json.dumps({"custom_id": i, "text": t}) + "\n" for i, t in DOCS))
        async with BatchClient(
            fleet.connection, namespace=fleet.namespace, tenant=fleet.tenant
        ) as batches:
            info = await batches.submit(corpus, model=EMBED_MODEL)
            progress = BatchProgress()
            final = await batches.follow(info.id, progress, timeout_s=120)
            progress.end()
            written = await batches.results(info.id, Path(tmp) / "out.jsonl")
    counts = final.request_counts
    print(f"batch {final.id}: {final.status}, {counts.completed} rows embedded, "
          f"{counts.failed} failed; {written.succeeded} result lines in OpenAI's batch "
          "output shape\n")  # fmt: skip


async def _transcribe(fleet: FleetClient) -> None:
    print(f"== transcribe ({WHISPER_MODEL})")
    result = await fleet.transcribe(SPEECH_SAMPLE.read_bytes(), model=WHISPER_MODEL)
    print(f"heard by the fleet in {SPEECH_SAMPLE.name}: {result.text.strip()!r} "
          f"({result.duration_s or 0:.1f}s of audio)")  # fmt: skip


async def _speak(fleet: FleetClient, answer: str) -> None:
    """The generated answer spoken: its audio streams in pieces as the voice makes them."""
    print(f"\n== speech ({SPEECH_MODEL}, streamed)")
    started = time.perf_counter()
    first: float | None = None
    joiner = SpeechJoiner()
    text = answer[:SPEECH_MAX_INPUT_CHARS]
    spoken = fleet.stream_speech(text, model=SPEECH_MODEL, voice="alloy")
    async with contextlib.aclosing(spoken) as events:
        async for event in events:
            if isinstance(event, SpeechAudio):
                first = first if first is not None else time.perf_counter() - started
                joiner.add(event)
            elif isinstance(event, StreamRestarted):
                joiner.restart()
            else:
                whole = joiner.join(event)
    SPOKEN_ANSWER.parent.mkdir(parents=True, exist_ok=True)
    SPOKEN_ANSWER.write_bytes(whole.audio)
    usage = whole.result.usage
    print(f"spoke the answer: {usage.audio_s:.1f}s of audio for {usage.characters} characters, "
          f"first audio after {first or 0:.2f}s; written to {SPOKEN_ANSWER}")  # fmt: skip
