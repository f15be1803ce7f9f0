"""local-espeak held to the speech suite, and speaking clause by clause: the first clause's
audio arrives before the next clause is spoken."""

from __future__ import annotations

import shutil
import stat
from contextlib import aclosing
from pathlib import Path

import pytest

from providers.speech import SpeechParams, SpeechProvider, speech_providers
from providers.speech.local_espeak import ESPEAK_MODEL, LocalEspeakSpeech
from tests.conformance.speech import SpeechProviderConformance

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="run deploy/local/system-packages.sh"
)


def logging_espeak(tmp_path: Path) -> tuple[Path, Path]:
    """An espeak-ng that notes each text it is given (one line per process), then speaks it."""
    log = tmp_path / "spoken.log"
    script = tmp_path / "espeak-ng"
    script.write_text(
        "#!/bin/sh\n"
        f'text=$(cat); printf "%s\\n" "$text" >> {log}\n'
        f'printf "%s" "$text" | exec {shutil.which("espeak-ng")} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


async def test_the_first_clause_is_heard_before_the_next_is_spoken(tmp_path: Path) -> None:
    binary, log = logging_espeak(tmp_path)
    provider = speech_providers.create("local-espeak", {"binary": str(binary)})
    text = (
        "The first clause comes out alone, the second one waits its turn, "
        "and so does the third one after it."
    )
    params = SpeechParams(model=ESPEAK_MODEL, voice="alloy")
    async with aclosing(provider.synthesize(text, params)) as stream:
        async for piece in stream:
            assert piece
            assert log.read_text().splitlines() == ["The first clause comes out alone,"]
            break
    spoken = [piece async for piece in provider.synthesize(text, params)]
    assert len(log.read_text().splitlines()) == 1 + 3
    assert len(spoken) >= 3


async def test_a_missing_program_stops_the_worker_at_load_naming_it() -> None:
    provider = speech_providers.create("local-espeak", {"binary": "/nonexistent/espeak-ng"})
    with pytest.raises(Exception, match=r"system-packages\.sh"):
        await provider.load()


class TestConformance(SpeechProviderConformance):
    model = ESPEAK_MODEL
    voice = "alloy"

    @pytest.fixture
    async def provider(self, tmp_path: Path) -> SpeechProvider:
        self.binary, self.log = logging_espeak(tmp_path)
        provider = speech_providers.create("local-espeak", {"binary": str(self.binary)})
        assert isinstance(provider, LocalEspeakSpeech)
        await provider.load()
        return provider

    def released(self, provider: SpeechProvider) -> bool:
        # The conformance text has three clauses; stopped after the first, one was spoken
        # (its process waited for and gone: `_clause` kills and reaps it on the way out).
        return self.log.read_text().splitlines()[1:] == ["The fleet speaks, clause by clause,"]
