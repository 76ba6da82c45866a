"""Golden output: a deterministic FLV made by FlvMuxer from fixed packets, analysed at
several detail levels; the expected text lives in ``golden/``. Regenerate with
``MIST_UPDATE_GOLDEN=1 pytest tests/analysers_flv/test_golden.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysers.flv import main
from mistcodecs.flv import FlvMuxer
from shm.model import Packet, TrackMeta

GOLDEN = Path(__file__).parent / "golden"
AVCC = bytes.fromhex(
    "01f4000dffe1001967f4000d919b28283f6022000003000200000300641e28532c01000668ebe3c44844fff8f800"
)
ASC = bytes.fromhex("120856e500")


def synthetic_flv() -> bytes:
    video = TrackMeta(1, "video", "H264", AVCC, width=320, height=240, fpks=25000)
    audio = TrackMeta(2, "audio", "AAC", ASC, rate=44100, channels=1, size=16)
    mux = FlvMuxer([video, audio])
    packets = [
        Packet(
            1,
            i * 40,
            80 if i % 5 else 0,
            i % 5 == 0,
            bytes([0, 0, 0, 2, 0x65 if i % 5 == 0 else 0x41, i]),
        )
        for i in range(10)
    ]
    packets += [Packet(2, i * 23, 0, True, bytes([0x21, 0x10, i])) for i in range(17)]
    packets.sort(key=lambda p: (p.dts, p.track))
    return mux.header() + b"".join(mux.packet(p) for p in packets) + mux.end(400)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("d1", ["-D", "1"]),
        ("d3", ["-D", "3"]),
        ("json", ["-D", "2", "--json"]),
        ("video", ["-F", "video"]),
    ],
)
def test_golden(tmp_path: Path, name: str, args: list[str]) -> None:
    src = tmp_path / "synthetic.flv"
    src.write_bytes(synthetic_flv())
    result = CliRunner().invoke(main, [str(src), *args])
    assert result.exit_code == 0, result.output
    expected = GOLDEN / f"synthetic_{name}.txt"
    if os.environ.get("MIST_UPDATE_GOLDEN"):
        expected.write_text(result.output)
    assert result.output == expected.read_text()
