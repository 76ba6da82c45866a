"""An LL-HLS playlist over real CMAF fragments: the segmenter groups ffmpeg's 200 ms
fragments into keyframe-aligned segments, parts are byte ranges of the segment files,
and PyAV plays the result frame-exact while our parser and checker accept it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from mistcodecs.hls import (
    ByteRange,
    InitSection,
    MediaPlaylist,
    Part,
    PlaylistState,
    Segment,
    ServerControl,
    check_media_playlist,
    cut_segments,
    decide,
    parse_directives,
    parse_media_playlist,
)
from mistcodecs.mp4.boxes import buffer_reader, find_path, iter_boxes, payload
from mistcodecs.mp4.records import Mdhd, Tfdt, Tfhd, Trun, is_sync

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")


def fragments(data: bytes) -> tuple[bytes, list[tuple[int, int, int, bool, bytes]]]:
    """(init bytes, [(start ms, end ms, byte size, starts with sync sample, bytes)])."""
    read = buffer_reader(data)
    boxes = list(iter_boxes(read, 0, len(data)))
    moov = next(b for b in boxes if b.type == "moov")
    mdhd = find_path(read, moov.payload_offset, moov.end, "trak/mdia/mdhd")
    assert mdhd is not None
    scale = Mdhd.parse(payload(read, mdhd)).timescale
    out = []
    media = [b for b in boxes if b.type in ("moof", "mdat")]  # leaves out a trailing mfra
    for moof, mdat in zip(media[::2], media[1::2], strict=True):
        assert (moof.type, mdat.type) == ("moof", "mdat")
        tfdt = find_path(read, moof.payload_offset, moof.end, "traf/tfdt")
        trun_box = find_path(read, moof.payload_offset, moof.end, "traf/trun")
        assert tfdt is not None and trun_box is not None
        base = Tfdt.parse(payload(read, tfdt)).base_media_decode_time
        tfhd_box = find_path(read, moof.payload_offset, moof.end, "traf/tfhd")
        assert tfhd_box is not None
        trun = Trun.parse(payload(read, trun_box))
        tfhd = Tfhd.parse(payload(read, tfhd_box))
        duration = sum(trun.durations) if trun.durations else (tfhd.duration or 0) * trun.count
        first_flags = trun.first_sample_flags
        if first_flags is None:
            first_flags = trun.flags[0] if trun.flags else tfhd.sample_flags
        assert first_flags is not None
        start = base * 1000 // scale
        end = (base + duration) * 1000 // scale
        out.append(
            (start, end, moof.size + mdat.size, is_sync(first_flags), data[moof.offset : mdat.end])
        )
    return data[: moov.end], out


@pytest.fixture(scope="module")
def cmaf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("llhls")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "4",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "200000",
         str(root / "frag.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    return root


def test_ll_hls_playlist_over_cmaf_fragments(cmaf: Path) -> None:
    init, frags = fragments((cmaf / "frag.mp4").read_bytes())
    (cmaf / "init.mp4").write_bytes(init)
    keys = [start for start, _, _, sync, _ in frags if sync]
    assert len(keys) == 4  # one per second
    end_ms = frags[-1][1]
    spans = cut_segments(keys, 1000, end_ms=end_ms)
    assert [s.end_ms - s.start_ms for s in spans] == [1000, 1000, 1000, 1000]
    segments = []
    for span in spans:
        mine = [f for f in frags if span.start_ms <= f[0] < span.end_ms]
        name = f"{span.name}.m4s"
        (cmaf / name).write_bytes(b"".join(f[4] for f in mine))
        parts, offset = [], 0
        for start, end, size, sync, _ in mine:
            parts.append(
                Part(
                    (end - start) / 1000, name, independent=sync, byterange=ByteRange(size, offset)
                )
            )
            offset += size
        segments.append(
            Segment(
                span.duration,
                name,
                parts=parts,
                init=InitSection("init.mp4") if span.msn == 0 else None,
            )
        )
    part_target = max(p.duration for s in segments for p in s.parts)
    pl = MediaPlaylist(
        segments=segments,
        part_target=part_target,
        server_control=ServerControl(can_block_reload=True, part_hold_back=3 * part_target),
        independent_segments=True,
        endlist=True,
    )
    text = pl.render()
    path = cmaf / "index.m3u8"
    path.write_text(text)
    back = parse_media_playlist(text)
    assert check_media_playlist(back) == []
    assert all(s.parts[0].independent for s in back.segments)
    assert all(abs(sum(p.duration for p in s.parts) - s.duration) < 0.002 for s in back.segments)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 100
    # MistAnalyserHLS reads the same set: box-level fMP4 timing agrees with the EXTINFs
    proc = subprocess.run(
        [sys.executable, "-m", "analysers.hls", str(path), "-D", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "segments=4" in proc.stdout and "media_s=4.0" in proc.stdout
    # an ended playlist answers blocking requests at once
    assert decide(PlaylistState.of(back), parse_directives("_HLS_msn=9&_HLS_part=0")).status == 200
