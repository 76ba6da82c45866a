"""The index records and the sidecar header format."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from inputs.index import (
    HEADER_VERSION,
    MediaIndex,
    TrackIndex,
    header_candidates,
    load_header,
    save_header,
)
from shm.model import TrackMeta


def sample() -> MediaIndex:
    idx = TrackIndex()
    for i in range(50):
        idx.append(i * 40, 80 if i % 3 else 0, 100 + i, i % 10 == 0, 1000 + i * 200, 100 + i, i)
    meta = TrackMeta(1, "video", "H264", b"\x01\x64\x00\x1f", width=320, height=240)
    return MediaIndex("MP4", [meta], {1: idx}, ["a warning"])


def test_header_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4.dtsh"
    index = sample()
    save_header(path, index, 12345, 678)
    got, why = load_header(path, "MP4", 12345, 678)
    assert why == "ok" and got is not None
    assert got.tracks == index.tracks and got.warnings == index.warnings
    assert got.frames[1] == index.frames[1]
    assert got.frames[1].parts() == index.frames[1].parts()


def test_header_rejected_when_stale_or_foreign(tmp_path: Path) -> None:
    path = tmp_path / "x.dtsh"
    save_header(path, sample(), 100, 5)
    assert load_header(path, "MP4", 101, 5)[0] is None
    assert "changed" in load_header(path, "MP4", 100, 6)[1]
    assert "FLV" not in load_header(path, "FLV", 100, 5)[1]
    assert load_header(path, "FLV", 100, 5)[0] is None
    assert load_header(tmp_path / "none", "MP4", 100, 5) == (None, "no header")


def test_header_version_checked(tmp_path: Path) -> None:
    import msgpack

    path = tmp_path / "x.dtsh"
    rec = sample().to_record(1, 1)
    rec["v"] = HEADER_VERSION + 1
    path.write_bytes(msgpack.packb(rec, use_bin_type=True))
    got, why = load_header(path, "MP4", 1, 1)
    assert got is None and "version" in why


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_damaged_headers_never_raise(blob: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.dtsh"
        path.write_bytes(blob)
        got, why = load_header(path, "MP4", 1, 1)
        assert got is None and why


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 7))
def test_truncated_and_flipped_real_header(cut: int, bit: int) -> None:
    import tempfile

    import msgpack

    blob = bytearray(msgpack.packb(sample().to_record(1, 1), use_bin_type=True))
    blob = blob[: min(cut, len(blob))]
    if blob:
        blob[cut % len(blob)] ^= 1 << bit
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.dtsh"
        path.write_bytes(bytes(blob))
        got, why = load_header(path, "MP4", 1, 1)
        assert (got is None) == (why != "ok")


def test_make_monotonic_keeps_pts() -> None:
    idx = TrackIndex()
    for dts, off in [(0, 0), (40, 0), (30, 20), (80, 0)]:
        idx.append(dts, off, 1, True, 0, 1)
    pts = [d + o for d, o in zip(idx.dts, idx.offset, strict=True)]
    assert idx.make_monotonic() == 1
    assert list(idx.dts) == [0, 40, 40, 80]
    assert [d + o for d, o in zip(idx.dts, idx.offset, strict=True)] == pts


def test_header_places(tmp_path: Path) -> None:
    src = tmp_path / "a b.mp4"
    beside, cached = header_candidates(str(src), str(tmp_path / "c"))
    assert beside == tmp_path / "a b.mp4.dtsh"
    assert cached.parent == tmp_path / "c" and cached.name.startswith("a b.mp4.")
