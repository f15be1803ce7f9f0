"""Streamed transcriptions through the HTTP gateway, driven by the official `openai`
package: the local Whisper transcribe worker's segments as OpenAI's
``transcript.text.delta`` events, the whole text in ``transcript.text.done``, the same text
the unstreamed answer has; a refusal before Kafka, a job that fails at once answered with
its status, and a client that leaves mid-stream cancelling its job."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import NamedTuple

import msgspec
import openai
import pytest
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

from contracts.names import request_topic
from contracts.secrets import Secret
from gateway import Gateway
from tests.conftest import Infra
from tests.integration.conftest import new_namespace, worker_settings
from tests.integration.harness import serving, until
from tests.integration.test_gateway import API_KEY, LIMITS, WHISPER_MODEL, speech
from transport.topic_reader import read_to_end
from workers import Worker, build_worker

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]

__all__ = ["speech"]  # the spoken clip's fixture, shared with test_gateway.py


class Fleet(NamedTuple):
    """A transcribe worker and a gateway in front of it: nothing else these tests need."""

    base_url: str
    worker: Worker
    infra: Infra
    namespace: str

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=API_KEY, max_retries=0)

    async def jobs(self) -> int:
        """How many records the transcribe request topic holds."""
        topic = request_topic("transcribe", self.namespace)
        return len([record async for record in read_to_end(self.infra.connection, topic)])

    def cancelled(self) -> float:
        """How many of the worker's jobs their callers cancelled while they ran."""
        sample = self.worker.metrics.registry.get_sample_value(
            "fleet_jobs_total", {"kind": "transcribe", "outcome": "cancelled"}
        )
        return sample or 0.0


@pytest.fixture(scope="module")
async def fleet(infra: Infra) -> AsyncIterator[Fleet]:
    signing = {"acme": Secret(f"acme-signing-{uuid.uuid4().hex}")}
    settings = msgspec.structs.replace(
        worker_settings(infra, new_namespace()),
        partitions=1,
        concurrency=2,
        shutdown_grace_s=5,
        tenant_keys=signing,
    )
    gateway = Gateway(
        infra.connection,
        namespace=settings.namespace,
        api_keys={"acme": Secret(API_KEY)},
        tenant_keys=signing,
        models={WHISPER_MODEL: "transcribe"},
        limits=LIMITS,
        port=0,
    )
    async with (
        serving(await build_worker("transcribe", settings)) as worker,
        gateway.running(),
    ):
        base_url = f"http://{gateway.host}:{gateway.port}/v1"
        yield Fleet(base_url, worker, infra, settings.namespace)


@pytest.fixture(scope="module")
def long_speech(speech: bytes, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The clip four times, each at the start of a Whisper window of its own (30 s): the
    first segment comes while three windows are still to decode. FLAC, whose silence costs
    next to nothing, keeps the upload near 110 KB."""
    if shutil.which("sox") is None:
        pytest.skip("run deploy/local/system-packages.sh")
    folder = tmp_path_factory.mktemp("long-speech")
    (folder / "speech.wav").write_bytes(speech)
    flac = folder / "long.flac"
    # -D: no dither, so the padding is true silence and compresses to nothing.
    command = ["sox", "-D", str(folder / "speech.wav"), "-r", "16000", str(flac)]
    subprocess.run([*command, "pad", "0", "33", "repeat", "3"], check=True)
    return flac.read_bytes()


async def test_a_streamed_transcript_is_the_text_of_the_whole_answer(
    fleet: Fleet, speech: bytes
) -> None:
    async with fleet.client() as client:
        whole = await client.audio.transcriptions.create(
            file=("speech.wav", speech), model=WHISPER_MODEL
        )
        stream = await client.audio.transcriptions.create(
            file=("speech.wav", speech), model=WHISPER_MODEL, stream=True
        )
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        events = [event async for event in stream]
    *deltas, done = events
    texts = [event.delta for event in deltas if isinstance(event, TranscriptionTextDeltaEvent)]
    assert texts
    assert len(texts) == len(deltas)
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert "".join(texts) == done.text
    assert done.text == whole.text
    assert "kafka" in done.text.lower()


async def test_a_stream_of_a_timed_format_is_400_naming_stream_before_kafka(
    fleet: Fleet, speech: bytes
) -> None:
    jobs = await fleet.jobs()
    async with fleet.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(
                file=("speech.wav", speech), model=WHISPER_MODEL, response_format="srt", stream=True
            )
    assert caught.value.param == "stream"
    assert "srt" in caught.value.message
    assert await fleet.jobs() == jobs


async def test_a_job_refused_before_its_first_segment_is_answered_with_its_status(
    fleet: Fleet, speech: bytes
) -> None:
    """Whisper tiny.en refuses French up front: the stream has not begun, so the refusal is
    the answer's status, not an error event after a 200."""
    async with fleet.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(
                file=("speech.wav", speech), model=WHISPER_MODEL, language="fr", stream=True
            )
    assert caught.value.code == "invalid_input"
    assert "'fr'" in caught.value.message


async def test_a_client_that_leaves_mid_stream_cancels_its_job(
    fleet: Fleet, long_speech: bytes
) -> None:
    cancelled = fleet.cancelled()
    async with fleet.client() as client:
        stream = await client.audio.transcriptions.create(
            file=("long.flac", long_speech), model=WHISPER_MODEL, stream=True
        )
        async for event in stream:
            assert isinstance(event, TranscriptionTextDeltaEvent)  # the first, not the done
            break
        await stream.close()
    await until(lambda: fleet.cancelled() == cancelled + 1)
