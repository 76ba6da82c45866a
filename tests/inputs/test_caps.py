"""``-j`` of every file input, and the controller's choice of input from it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from controller.inputs import choose_input

PROGRAMS = {
    "MP4": ("mp4", ["/*.mp4", "/*.mov"], 9),
    "FLV": ("flv", ["/*.flv"], 9),
    "TS": ("ts", ["/*.ts", "/*.m2ts"], 9),
    "EBML": ("ebml", ["/*.mkv", "/*.mka", "/*.mk3d", "/*.mks", "/*.webm"], 9),
    "AV": ("libav", ["/*"], 1),
}


@pytest.fixture(scope="module")
def capas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, (module, _, _) in PROGRAMS.items():
        res = subprocess.run(
            [sys.executable, "-m", f"inputs.{module}", "-j"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        out[name] = json.loads(res.stdout)
    return out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_capabilities_json(name: str, capas: dict[str, dict[str, Any]]) -> None:
    capa = capas[name]
    _, patterns, priority = PROGRAMS[name]
    assert capa["name"] == name
    assert capa["source_match"] == patterns
    assert capa["priority"] == priority
    opts = capa["optional"]
    assert opts["pagetimeout"]["default"] == 15 and opts["pagetimeout"]["option"] == "--pagetimeout"
    assert opts["inputtimeout"]["default"] == 30
    assert "type" not in opts["always_on"]  # a flag
    assert opts["debug"]["option"] == "--debug"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/media/a.mp4", "MP4"),
        ("/media/a.mov", "MP4"),
        ("/media/a.flv", "FLV"),
        ("/media/a.ts", "TS"),
        ("/media/a.m2ts", "TS"),
        ("/media/a.mkv", "EBML"),
        ("/media/a.webm", "EBML"),
        ("/media/a.avi", "AV"),
        ("/media/a.nut", "AV"),
        ("av:/media/a.mp4", "AV"),
    ],
)
def test_controller_picks_the_input(
    source: str, expected: str, capas: dict[str, dict[str, Any]]
) -> None:
    choice = choose_input(capas, source)
    assert choice is not None and choice.name == expected
