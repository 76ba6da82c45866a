"""The ``bench fuzz`` suite: its harness records crashes with a reproducer, and a short
run over every target finds none (the long run is ``python -m bench fuzz --json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suites import fuzz


def test_a_crash_is_recorded_with_a_hex_reproducer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def load() -> tuple[fuzz.Parse, tuple[type[BaseException], ...]]:
        def parse(data: bytes) -> None:
            if data[:1] == b"x":
                raise ValueError("an allowed error")
            if data != b"abcdef":  # every mutant crashes: the harness must keep just one
                raise KeyError("boom")

        return parse, (ValueError,)

    monkeypatch.setitem(fuzz.TARGETS, "demo", fuzz.Target("demo", load, lambda: [b"abcdef"]))
    result = fuzz.fuzz_in_process("demo", 0.2, tmp_path)
    assert result["iterations"] > 1
    assert result["crashes"] == 1 and result["errors"] == ["KeyError: 'boom'"]
    text = Path(result["reproducers"][0]).read_text().splitlines()
    assert bytes.fromhex(text[0]) != b"abcdef"
    assert text[1] == "# KeyError('boom')"


@pytest.mark.parametrize("name", sorted(fuzz.TARGETS))
def test_every_target_survives_a_short_run(name: str, tmp_path: Path) -> None:
    seeds = fuzz.TARGETS[name].seeds()
    assert seeds and all(seeds)
    parse, _allowed = fuzz.TARGETS[name].load()
    for seed in seeds:  # the seeds themselves are valid input
        parse(seed)
    result = fuzz.fuzz_in_process(name, 0.1, tmp_path)
    assert result["iterations"] > 0
    assert result["crashes"] == 0, result["errors"]


@pytest.mark.slow
def test_quick_suite_from_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "fuzz", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    report = json.loads(out)
    assert set(report["targets"]) == set(fuzz.TARGETS)
    assert report["total_crashes"] == 0, report
