"""MP4 timed text (``tx3g``, ffmpeg's ``mov_text``) becomes the model's subtitle track:
``meta``/``subtitle``, payload = 4-byte big-endian cue duration + UTF-8 text, the empty
gap samples dropped; checked against ffmpeg's own WebVTT conversion of the same file,
in the demuxer, on the bus (MistInMP4), in MistOutHTTP's info JSON and in its SRT and
WebVTT outputs (read back by ffmpeg)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import msgpack
import pytest

from inputs.index import HEADER_VERSION
from mistcodecs.mp4.demux import open_file
from tests.inputs.support import InputProcess, ffmpeg, read_tracks, tracks_of
from tests.outputs_http.conftest import start_server, stop_server

CUES = [(1000, 2500, "Hello world"), (3000, 4000, "Zweite Zeile: äöü"), (4200, 5600, "drei\nvier")]
_VTT_TIME = re.compile(r"(?:(\d+):)?(\d+):(\d+)\.(\d+) --> (?:(\d+):)?(\d+):(\d+)\.(\d+)")


def _stamp(ms: int) -> str:
    return f"00:00:{ms // 1000:02d},{ms % 1000:03d}"


def _ms(h: str | None, m: str, s: str, frac: str) -> int:
    return ((int(h or 0) * 60 + int(m)) * 60 + int(s)) * 1000 + int(frac)


@pytest.fixture(scope="module")
def mov_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tx3g")
    srt = folder / "subs.srt"
    srt.write_text(
        "".join(
            f"{i}\n{_stamp(a)} --> {_stamp(b)}\n{t}\n\n" for i, (a, b, t) in enumerate(CUES, 1)
        ),
        encoding="utf-8",
    )
    out = folder / "subs.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-i", str(srt), "-t", "6",
        "-map", "0:v", "-map", "1:s", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
        "-c:s", "mov_text", str(out),
    )  # fmt: skip
    return out


def ffmpeg_cues(path: Path) -> list[tuple[int, int, str]]:
    """The file's subtitles as ffmpeg itself decodes them (to WebVTT)."""
    vtt = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:s", "-f", "webvtt", "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    cues = []
    for block in vtt.split("\n\n"):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            m = _VTT_TIME.match(line)
            if m:
                g = m.groups()
                cues.append((_ms(*g[:4]), _ms(*g[4:]), "\n".join(lines[i + 1 :])))
    return cues


def test_ffmpeg_wrote_the_cues_we_asked_for(mov_text: Path) -> None:
    assert ffmpeg_cues(mov_text) == CUES


def test_demuxer_gives_subtitle_payloads(mov_text: Path) -> None:
    demux, fh = open_file(str(mov_text))
    with fh:
        (sub,) = [t for t in demux.tracks() if t.type == "meta"]
        assert sub.codec == "subtitle" and sub.init == b""
        got = [
            (p.dts, p.dts + int.from_bytes(p.data[:4], "big"), p.data[4:].decode())
            for p in demux.packets([sub.id])
        ]
    assert got == ffmpeg_cues(mov_text)


def test_mistinmp4_info_json_srt_and_webvtt(mov_text: Path, stream: str, tmp_path: Path) -> None:
    docs: dict[str, Path] = {}
    with InputProcess("mp4", stream, mov_text) as inp:
        reader = inp.reader()
        try:
            tracks = {t.id: t for t in tracks_of(reader)}
            packets = read_tracks(reader)
            server = start_server()
            try:
                with urllib.request.urlopen(f"{server.base}/json_{stream}.js", timeout=30) as r:
                    info = json.loads(r.read())
                for ext in ("srt", "vtt", "webvtt"):
                    with urllib.request.urlopen(f"{server.base}/{stream}.{ext}", timeout=30) as r:
                        docs[ext] = tmp_path / f"out.{'vtt' if ext == 'webvtt' else ext}"
                        docs[ext].write_bytes(r.read())
                        assert r.headers["Content-Type"].startswith(
                            "text/plain" if ext == "srt" else "text/vtt"
                        )
            finally:
                stop_server(server)
        finally:
            reader.close()
        assert inp.stop() == 0
    (sub,) = [t for t in tracks.values() if t.type == "meta"]
    assert sub.codec == "subtitle"
    got = [
        (p.dts, p.dts + int.from_bytes(p.data[:4], "big"), bytes(p.data[4:]).decode())
        for p in packets
        if p.track == sub.id
    ]
    assert got == CUES
    described = [t for t in info["meta"]["tracks"].values() if t["type"] == "meta"]
    assert [(t["codec"], t["trackid"]) for t in described] == [("subtitle", sub.id)]
    for ext, doc in docs.items():
        assert ffmpeg_cues(doc) == CUES, ext
    assert docs["srt"].read_text().startswith("1\n00:00:01,000 --> 00:00:02,500\nHello world\n")


def test_old_version_header_is_indexed_again(mov_text: Path, stream: str, tmp_path: Path) -> None:
    """A header from before the subtitle rename (version 1, codec ``tx3g``) is not
    trusted: MistInMP4 indexes the file again, publishes the subtitle track and
    rewrites the header at the current version."""
    src = tmp_path / "subs.mp4"
    shutil.copy(mov_text, src)
    header = Path(f"{src}.dtsh")
    with InputProcess("mp4", stream, src, "--inputtimeout", "0") as inp:
        assert inp.wait() == 0, inp.stderr
    rec = msgpack.unpackb(header.read_bytes(), raw=False, strict_map_key=False)
    assert rec["v"] == HEADER_VERSION > 1
    (sub,) = [t for t in rec["tracks"] if t["type"] == "meta"]
    sub["codec"] = "tx3g"  # what version 1 wrote for this track
    rec["v"] = 1
    header.write_bytes(msgpack.packb(rec, use_bin_type=True))

    with InputProcess("mp4", stream, src) as inp:
        tracks, packets = inp.read_out()
        assert inp.stop() == 0
    assert f"header {header} not used: header version 1 is not {HEADER_VERSION}" in inp.stderr
    (meta,) = [t for t in tracks if t.type == "meta"]
    assert meta.codec == "subtitle"
    got = [
        (p.dts, p.dts + int.from_bytes(p.data[:4], "big"), bytes(p.data[4:]).decode())
        for p in packets
        if p.track == meta.id
    ]
    assert got == CUES
    rec = msgpack.unpackb(header.read_bytes(), raw=False, strict_map_key=False)
    assert rec["v"] == HEADER_VERSION
    assert [t["codec"] for t in rec["tracks"] if t["type"] == "meta"] == ["subtitle"]
