"""The local chat engine's pure parts: the CPU check and stop sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ConfigError
from providers.chat.llama_engine import _StopFilter, llama_seed, require_cpu

_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    return path


def test_a_cpu_without_avx2_is_refused_with_the_missing_instructions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x86-64-v3.*lacks avx2, fma, f16c"):
        require_cpu(_cpuinfo(tmp_path, _FLAGS))


def test_a_cpu_with_avx2_fma_and_f16c_is_accepted(tmp_path: Path) -> None:
    require_cpu(_cpuinfo(tmp_path, f"{_FLAGS} avx2 fma f16c avx512f amx_tile"))


def _run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    stop = _StopFilter(stops)
    out = ""
    for piece in pieces:
        out += stop.feed(piece)
        if stop.stopped:
            return out, True
    return out + stop.flush(), False


def test_text_is_cut_at_a_stop_sequence_split_across_pieces() -> None:
    assert _run(["\nUser:"], ["Hi", " there", "\nUs", "er:", " more"]) == ("Hi there", True)


def test_without_a_stop_sequence_nothing_is_lost() -> None:
    assert _run(["###"], ["a", "#", "b", "##"]) == ("a#b##", False)
    assert _run([], ["a", "b"]) == ("ab", False)


def test_the_earliest_stop_sequence_wins() -> None:
    assert _run(["b", "cd"], ["a", "cdb"]) == ("a", True)


def test_request_seeds_map_to_32_bit_seeds_that_never_mean_random() -> None:
    assert llama_seed(7) == 7
    assert llama_seed(0xFFFFFFFF) != 0xFFFFFFFF  # llama.cpp's "pick a random seed"
    assert llama_seed(2**63 - 1) < 0xFFFFFFFF
