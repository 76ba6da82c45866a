"""A combined VoD read from the start keeps audio that precedes the first video key
(Opus pre-skip at -7 ms in WebM), checked against ffprobe through the real MistInEBML;
and a mid-stream seek starts the other tracks at most ``SEEK_SLACK_MS`` early."""

from __future__ import annotations

from pathlib import Path

from shm import StreamReader, StreamWriter
from shm.model import TrackMeta
from shm.reader import SEEK_SLACK_MS
from tests.inputs.support import InputProcess, by_track, make_media, probe, read_all, tracks_of


def test_combined_read_of_webm_matches_ffprobe(tmp_path: Path, stream: str) -> None:
    src = make_media(
        tmp_path / "vp9_opus.webm",
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25",
         "-b:v", "200k"],
        ["-c:a", "libopus", "-b:a", "48k"],
        seconds=2,
    )  # fmt: skip
    probed = {p.kind: p for p in probe(src)}
    assert min(d for d in probed["audio"].dts if d is not None) < 0  # the case at stake
    with InputProcess("ebml", stream, src) as inp:
        reader = inp.reader()
        try:
            kinds = {t.id: t.type for t in tracks_of(reader)}
            got = by_track(read_all(reader))  # all tracks at once, from the start
        finally:
            reader.close()
        inp.stop()
    counts = {kinds[tid]: len(pkts) for tid, pkts in got.items()}
    assert counts == {k: len(p.dts) for k, p in probed.items()}
    audio = next(p for tid, p in got.items() if kinds[tid] == "audio")
    assert [p.dts for p in audio] == probed["audio"].dts


def test_vod_seek_starts_audio_just_before_the_key(stream: str) -> None:
    """Video keys every 1 s; audio frames of 20 ms starting 7 ms early."""
    with StreamWriter(stream, live=False) as w:
        v = w.add_track(TrackMeta(0, "video", "VP9"))
        a = w.add_track(TrackMeta(0, "audio", "opus", rate=48000, channels=2))
        video = [(i * 40, 0, 10, i % 25 == 0) for i in range(100)]
        audio = [(-7 + i * 20, 0, 5, True) for i in range(200)]
        w.set_index(v, video)
        w.set_index(a, audio)
        for tid, parts in ((v, video), (a, audio)):
            assert w.page_parts(tid, 0) == range(len(parts))  # 4 s: one data page
            w.load_page(tid, 0, [bytes(p[2]) for p in parts])
        with StreamReader(stream) as r:
            first = [r.read() for _ in range(3)]
            assert [(p.track, p.dts) for p in first if p] == [(a, -7), (v, 0), (a, 13)]
            assert r.seek(2_500) == 2_000
            pkts = [r.read() for _ in range(4)]
            audio_start = min(p.dts for p in pkts if p and p.track == a)
            # the audio frame sounding over the key (1993..2013 ms) is kept
            assert audio_start == 1_993 and 2_000 - audio_start <= SEEK_SLACK_MS
            assert next(p for p in pkts if p and p.track == v).dts == 2_000
