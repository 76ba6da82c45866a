"""Golden output: the analyser on a small deterministic file built by EbmlMuxer from
synthetic packets. Regenerate with ``MISTPY_UPDATE_GOLDEN=1`` after a deliberate change."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from analysers.common import run
from analysers.ebml import EbmlAnalyser
from mistcodecs.ebml import EbmlMuxer
from shm.model import Packet, TrackMeta

GOLDEN = Path(__file__).parent / "golden"
OPUS_HEAD = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"


def fixture_bytes() -> bytes:
    tracks = [
        TrackMeta(1, "video", "VP9", width=64, height=48, fpks=10000),
        TrackMeta(2, "audio", "opus", init=OPUS_HEAD, rate=48000, channels=2),
    ]
    m = EbmlMuxer(tracks, webm=True)
    data = m.header()
    for i in range(12):  # 1.2 s: a keyframe every 0.5 s, audio every 20 ms
        data += m.packet(Packet(1, i * 100, 0, i % 5 == 0, bytes([i]) * (40 if i % 5 == 0 else 10)))
        for j in range(5):
            data += m.packet(Packet(2, i * 100 + j * 20, 0, True, b"\xfc" + bytes([j]) * 7))
    return data + m.end()


@pytest.mark.parametrize(("detail", "as_json"), [(2, False), (3, False), (4, True)])
def test_golden(detail: int, as_json: bool) -> None:
    out = io.StringIO()
    code = run(
        EbmlAnalyser(detail=detail, as_json=as_json, out=out), iter([fixture_bytes()]), False, 0
    )
    assert code == 0
    path = GOLDEN / f"synthetic_D{detail}{'.json' if as_json else ''}.txt"
    if os.environ.get("MISTPY_UPDATE_GOLDEN"):
        path.write_text(out.getvalue())
    assert out.getvalue() == path.read_text()
