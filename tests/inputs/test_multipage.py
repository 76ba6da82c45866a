"""Files spanning several data pages: pages reached by seeking (MistInAV seeks with
PyAV, MistInTS restarts one PES early) carry the same frames as a straight read."""

from __future__ import annotations

from pathlib import Path

import pytest

from shm.model import Packet
from tests.inputs.support import (
    InputProcess,
    by_track,
    decode_count,
    ffmpeg,
    probe,
    read_all,
    tracks_of,
)

CASES = [("ts", "ts"), ("ebml", "mkv"), ("libav", "nut")]
MIDDLE_MS = 100_000  # inside the second page (pages flip after 60 s)


@pytest.mark.parametrize(("module", "ext"), CASES)
def test_pages_by_seek_and_in_order(
    module: str, ext: str, long_mp4: Path, tmp_path: Path, stream: str
) -> None:
    path = tmp_path / f"long.{ext}"
    ffmpeg("-i", str(long_mp4), "-c", "copy", str(path))
    with InputProcess(module, stream, path) as inp:
        reader = inp.reader()
        try:
            tracks = tracks_of(reader)
            got: dict[int, list[Packet]] = {}
            for t in tracks:
                c = reader.track_page(t.id).counters()
                assert c[7] - c[6] >= 2, f"{t.codec}: one page only"
                reader.select([t.id])
                reader.seek(MIDDLE_MS)  # a later page first
                tail = read_all(reader)
                reader.seek(-(1 << 40))  # then from the top
                whole = read_all(reader)
                assert [p.data for p in whole[-len(tail) :]] == [p.data for p in tail]
                got[t.id] = whole
        finally:
            reader.close()
        assert inp.stop() == 0
    assert "ERROR" not in inp.stderr and "Traceback" not in inp.stderr, inp.stderr
    probed = probe(path)
    for t in tracks:
        theirs = next(p for p in probed if p.kind == t.type)
        assert len(got[t.id]) == len(theirs.pts)
        decoded, errors = decode_count(t, got[t.id])
        assert errors == 0 and decoded >= len(got[t.id]) - 3


def test_same_payloads_as_the_mp4_input(long_mp4: Path, tmp_path: Path, stream: str) -> None:
    """FLV carries the MP4's AVCC/raw AAC unchanged: byte-identical frames."""
    results = {}
    for module, ext in [("mp4", "mp4"), ("flv", "flv")]:
        path = long_mp4 if ext == "mp4" else tmp_path / f"same.{ext}"
        if ext != "mp4":
            ffmpeg("-i", str(long_mp4), "-c", "copy", str(path))
        with InputProcess(module, stream, path) as inp:
            reader = inp.reader()
            try:
                reader.seek(-(1 << 40))
                results[module] = by_track(read_all(reader))
            finally:
                reader.close()
            assert inp.stop() == 0
    base = results["mp4"]
    for module in ("flv",):
        for tid in base:
            assert [p.data for p in results[module][tid]] == [p.data for p in base[tid]], module
