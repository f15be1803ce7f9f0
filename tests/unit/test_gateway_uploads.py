"""The gateway's transcription uploads without a server: a form as httpx (the `openai`
package's transport) encodes it is read back whole, binary bytes and array fields too; a body
that is not such a form is 400; timed segments become SubRip and WebVTT cues."""

from __future__ import annotations

import httpx
import pytest

from contracts.replies import TranscriptSegment
from gateway.errors import OpenAIError
from gateway.multipart_form import read_form
from gateway.transcriptions import read_transcription_call, srt, vtt

# A file that holds what a naive split would cut at: a line break and a near-boundary.
AUDIO = b"RIFF\r\n--\r\n\x00\xff" * 100


def _encoded(data: dict[str, str | list[str]], audio: bytes = AUDIO) -> tuple[str, bytes]:
    request = httpx.Request(
        "POST", "http://gw/v1/audio/transcriptions", data=data, files={"file": ("a.wav", audio)}
    )
    return request.headers["content-type"], request.read()


async def test_a_form_is_read_back_as_it_was_sent() -> None:
    content_type, body = _encoded(
        {
            "model": "whisper-tiny.en",
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["segment", "segment"],
        }
    )
    form = await read_form(content_type, body)
    assert form.fields == {
        "model": ["whisper-tiny.en"],
        "response_format": ["verbose_json"],
        "timestamp_granularities[]": ["segment", "segment"],
    }
    assert form.files["file"].filename == "a.wav"
    assert form.files["file"].data == AUDIO
    call = await read_transcription_call(content_type, body)
    assert (call.model, call.audio) == ("whisper-tiny.en", AUDIO)
    assert call.response_format == "verbose_json"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"model": "m"}'),
        ("multipart/form-data", b"--x\r\n"),  # no boundary named
        ("multipart/form-data; boundary=x", b"no delimiter at all"),
        ("multipart/form-data; boundary=x", b'--x\r\ncontent-disposition: form-data; name="a"'),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nvalue\r\n--x--"),  # no disposition
    ],
)
async def test_a_body_that_is_not_a_form_is_400(content_type: str, body: bytes) -> None:
    with pytest.raises(OpenAIError) as caught:
        await read_form(content_type, body)
    assert caught.value.status == 400


async def test_a_field_given_twice_or_an_empty_file_is_400_naming_it() -> None:
    with pytest.raises(OpenAIError) as twice:
        await read_transcription_call(*_encoded({"model": ["a", "b"]}))
    with pytest.raises(OpenAIError) as empty:
        await read_transcription_call(*_encoded({"model": "m"}, audio=b""))
    assert (twice.value.param, empty.value.param) == ("model", "file")


def test_segments_become_subrip_and_webvtt_cues() -> None:
    segments = [
        TranscriptSegment(request_id="r", seq=0, start_s=0.0, end_s=2.5, text="Hello."),
        TranscriptSegment(request_id="r", seq=1, start_s=3725.0004, end_s=3726.25, text="Bye."),
    ]
    assert srt(segments) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello.\n\n2\n01:02:05,000 --> 01:02:06,250\nBye.\n\n"
    )
    assert vtt(segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello.\n\n01:02:05.000 --> 01:02:06.250\nBye.\n\n"
    )


async def test_stream_is_true_or_false_and_true_only_for_the_formats_of_text_alone() -> None:
    streamed = await read_transcription_call(*_encoded({"model": "m", "stream": "true"}))
    whole = await read_transcription_call(
        *_encoded({"model": "m", "stream": "false", "response_format": "srt"})
    )
    assert (streamed.stream, whole.stream) == (True, False)
    for fields in ({"stream": "yes"}, {"stream": "true", "response_format": "verbose_json"}):
        with pytest.raises(OpenAIError) as caught:
            await read_transcription_call(*_encoded({"model": "m", **fields}))
        assert (caught.value.status, caught.value.param) == (400, "stream")
