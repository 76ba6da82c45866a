"""Golden outputs: every analyser on the committed ffmpeg-made fixtures (``fixtures/``,
made by ``make_fixtures.py``), compared with the sidecars ``<fixture>.<analyser>.txt``
(human output at the default detail) and ``.json`` (``--json``). Regenerate after a
deliberate output change with ``MIST_UPDATE_GOLDEN=1 pytest tests/analysers_golden``."""

from __future__ import annotations

import json
import os

import pytest

from tests.analysers_golden.cases import CASES, FIXTURES, analyse

LIMIT = 60 * 1024


@pytest.mark.parametrize(("fixture", "analyser"), CASES)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_golden(fixture: str, analyser: str, as_json: bool) -> None:
    result = analyse(fixture, analyser, *(["--json"] if as_json else []))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1].split(":")[0] in (analyser.upper(), f"MistAnalyser{analyser.upper()}")
    assert "valid" in lines[-1]
    if as_json:
        for line in lines[:-1]:  # one JSON object per line, the summary stays text
            assert isinstance(json.loads(line), dict)
    sidecar = FIXTURES / f"{fixture}.{analyser}.{'json' if as_json else 'txt'}"
    if os.environ.get("MIST_UPDATE_GOLDEN"):
        sidecar.write_text(result.stdout)
    assert result.stdout == sidecar.read_text()


def test_fixtures_are_small() -> None:
    media = [p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix not in (".json", ".txt")]
    assert len(media) >= 10
    for path in media:
        assert path.stat().st_size < LIMIT, path
