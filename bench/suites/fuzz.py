"""Fuzz every parser: ``python -m bench fuzz [--quick] --json``.

Each target feeds arbitrary bytes to one parser (the FLV, TS, MP4, EBML, Ogg and MP3
demuxers, AMF, the RTMP chunk reader and both handshake roles, TS PSI, HLS and DASH
playlists, the HTTP request parser, the controller's config parsing, and the four file
analysers end to end). Any exception other than the parser's own errors (``FormatError``
/ ``MediaError``; ``ConfigError`` for the config) is a crash; its input is saved as hex
under ``<tmp>/mistpy-fuzz-*/``.

Quick mode (about 30 s in all) mutates valid seed inputs in-process, driven by
hypothesis. The long mode runs each target under atheris (libFuzzer, coverage-guided) in
a child process for ``MIST_FUZZ_SECONDS`` (default 60) when atheris is installed, else
the in-process engine for as long. Result per target: iterations, seconds, crashes and
the reproducer files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

Parse = Callable[[bytes], object]
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "analysers_golden" / "fixtures"
QUICK_S = 1.4  # per target; 19 targets
MUTANTS = 16  # mutated inputs per hypothesis example
INTERESTING = [0, 1, 7, 8, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
INSTRUMENT = ["mistcodecs", "analysers", "outputs.http.parser", "controller.config_store"]


@dataclass(frozen=True)
class Target:
    name: str
    load: Callable[[], tuple[Parse, tuple[type[BaseException], ...]]]  # lazy: atheris instruments
    seeds: Callable[[], list[bytes]]


# ---- the parsers ---------------------------------------------------------------------------


def _media_errors() -> tuple[type[BaseException], ...]:
    from common.errors import MediaError

    return (MediaError,)  # FormatError, Truncated, AmfError, ChunkError, HttpError are MediaErrors


def _demuxer(factory: Callable[[], Any]) -> Parse:
    def parse(data: bytes) -> None:
        d = factory()
        half = len(data) // 2  # two feeds: state carried across a split
        d.feed(data[:half])
        d.feed(data[half:])
        d.end()

    return parse


def _load_flv() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.flv import FlvDemuxer

    return _demuxer(FlvDemuxer), _media_errors()


def _load_ts() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.ts import TsDemuxer

    return _demuxer(TsDemuxer), _media_errors()


def _load_ebml() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.ebml import EbmlDemuxer

    return _demuxer(EbmlDemuxer), _media_errors()


def _load_ogg() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.ogg import OggDemuxer

    return _demuxer(OggDemuxer), _media_errors()


def _load_mp3() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.mp3 import Mp3Demuxer

    return _demuxer(Mp3Demuxer), _media_errors()


def _load_amf() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs import amf

    def parse(data: bytes) -> None:
        try:
            amf.decode_all(data)
        finally:
            amf.decode_amf3(data)

    return parse, _media_errors()


def _load_psi() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.ts.psi import Pat, Pmt, SectionAssembler

    def parse(data: bytes) -> None:
        asm = SectionAssembler()
        sections = asm.feed(data[:184], True) + asm.feed(data[184:368], False)
        for sec in [data, *sections]:
            for kind in (Pat, Pmt):
                try:
                    kind.parse(sec)
                except _media_errors():
                    pass

    return parse, _media_errors()


def _load_mp4() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.mp4.boxes import buffer_reader
    from mistcodecs.mp4.demux import Mp4Demuxer

    def parse(data: bytes) -> None:
        demux = Mp4Demuxer(buffer_reader(data), len(data))
        for meta in demux.tracks():
            table = demux.sample_table(meta.id)
            for i in range(min(len(table), 4)):
                demux.read_sample(meta.id, i)
        for _ in zip(range(64), demux.packets(), strict=False):
            pass

    return parse, _media_errors()


def _load_rtmp_chunks() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.rtmp import ChunkReader

    def parse(data: bytes) -> None:
        reader = ChunkReader()
        reader.feed(data[: len(data) // 3])
        reader.feed(data[len(data) // 3 :])

    return parse, _media_errors()


def _load_rtmp_server() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.rtmp import RtmpServerConnection

    def parse(data: bytes) -> None:
        conn = RtmpServerConnection()
        for part in (data[:1537], data[1537:3073], data[3073:]):  # C0+C1, C2, chunks
            conn.receive_data(part)
            conn.data_to_send()

    return parse, _media_errors()


def _load_rtmp_client() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.rtmp import RtmpClientConnection

    def parse(data: bytes) -> None:
        conn = RtmpClientConnection()
        conn.connect("live", "rtmp://127.0.0.1/live")
        conn.data_to_send()
        for part in (data[:3073], data[3073:]):  # S0+S1+S2, chunks
            conn.receive_data(part)
            conn.data_to_send()

    return parse, _media_errors()


def _load_hls() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.hls import (
        check_media_playlist,
        is_master_playlist,
        parse_master_playlist,
        parse_media_playlist,
    )

    def parse(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if is_master_playlist(text):
            parse_master_playlist(text)
        else:
            check_media_playlist(parse_media_playlist(text))

    return parse, _media_errors()


def _load_dash() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from mistcodecs.dash import parse_mpd

    return parse_mpd, _media_errors()


def _load_http() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from outputs.http.parser import RequestParser

    def parse(data: bytes) -> None:
        parser = RequestParser()
        for i in range(0, len(data), 97):  # requests arrive in pieces
            parser.feed(data[i : i + 97])

    return parse, _media_errors()


def _load_config() -> tuple[Parse, tuple[type[BaseException], ...]]:
    from controller.config_store import ConfigError, normalise, parse_config_text

    def parse(data: bytes) -> None:
        normalise(parse_config_text(data.decode("utf-8", "replace"), Path("fuzz.json")))

    return parse, (ConfigError,)


def _analyser(kind: str) -> Callable[[], tuple[Parse, tuple[type[BaseException], ...]]]:
    def load() -> tuple[Parse, tuple[type[BaseException], ...]]:
        from analysers.common import run
        from analysers.ebml import EbmlAnalyser
        from analysers.flv import FlvAnalyser
        from analysers.mp4 import Mp4Analyser
        from analysers.ts import TsAnalyser

        cls = {"flv": FlvAnalyser, "ts": TsAnalyser, "mp4": Mp4Analyser, "ebml": EbmlAnalyser}
        detail = {"flv": 3, "ts": 127, "mp4": 10, "ebml": 4}[kind]

        def parse(data: bytes) -> None:
            out = io.StringIO()
            code = run(cls[kind](detail=detail, as_json=True, out=out), iter([data]), False, 0)
            if code not in (0, 1):
                raise AssertionError(f"exit {code} on in-memory input")

        return parse, ()  # the analyser must turn every problem into a diagnostic

    return load


# ---- seeds -----------------------------------------------------------------------------------


def _fixtures(*names: str) -> list[bytes]:
    return [(FIXTURES / n).read_bytes() for n in names if (FIXTURES / n).exists()]


@cache
def _ffmpeg_audio(fmt: str) -> list[bytes]:
    """Half a second of tone in ``fmt`` (mp3 or ogg), made once per run."""
    args = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "ogg": ["-c:a", "libopus", "-f", "ogg"]}
    try:
        out = subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
             "-i", "sine=sample_rate=48000:duration=0.5", "-ac", "1", *args[fmt], "-"],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return [b"OggS\x00\x02" + bytes(40) if fmt == "ogg" else b"\xff\xfb\x90\x64" + bytes(413)]
    return [out]


def _amf_seeds() -> list[bytes]:
    from mistcodecs import amf

    meta = {"duration": 2.0, "width": 64.0, "stereo": False, "tags": ["a", 1.0, None]}
    return [
        amf.encode_all("onMetaData", amf.EcmaArray(meta)),
        amf.encode_all("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}),
    ]


@cache
def _rtmp_session() -> tuple[bytes, bytes]:
    """What a client and our server say to each other: connect, createStream, publish,
    and a few media messages (client->server bytes, server->client bytes)."""
    from mistcodecs.rtmp import (
        Connect,
        ConnectResult,
        Publish,
        RtmpClientConnection,
        RtmpServerConnection,
        StreamCreated,
    )

    client, server = RtmpClientConnection(), RtmpServerConnection()
    client.connect("live", "rtmp://127.0.0.1/live")
    up, down = bytearray(), bytearray()
    for _ in range(12):
        data = client.data_to_send()
        up += data
        for ev in server.receive_data(data) if data else []:
            if isinstance(ev, Connect):
                server.accept_connect(ev)
            elif isinstance(ev, Publish):
                server.accept_publish(ev)
                client.send_media(ev.stream_id, "video", 0, b"\x17\x00\x00\x00\x00" + bytes(40))
                client.send_media(ev.stream_id, "audio", 0, b"\xaf\x00\x12\x08")
        back = server.data_to_send()
        down += back
        for ev in client.receive_data(back) if back else []:
            if isinstance(ev, ConnectResult):
                client.create_stream()
            elif isinstance(ev, StreamCreated):
                client.publish(ev.stream_id, "key")
    return bytes(up), bytes(down)


def _psi_seeds() -> list[bytes]:
    out = []
    for ts in _fixtures("h264_aac.ts"):
        for k in range(0, min(len(ts), 188 * 12), 188):
            pkt = ts[k : k + 188]
            if pkt[1] & 0x40:  # a section starts here: skip header and pointer field
                out.append(pkt[5 + pkt[4] :])
    return out or [bytes.fromhex("0000b00d0001c100000001f0002ab104b2")]


HLS_SEEDS = [
    "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.5\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12\n"
    '#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\nseg7.m4s\n'
    '#EXT-X-PART:DURATION=0.5,URI="p8.0.m4s",INDEPENDENT=YES\n'
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p8.1.m4s"\n'
    '#EXT-X-RENDITION-REPORT:URI="../a/index.m3u8",LAST-MSN=8,LAST-PART=0\n',
    '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",DEFAULT=YES,URI="a.m3u8"\n'
    '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=64x64,CODECS="avc1.64000a,mp4a.40.2",'
    'AUDIO="a"\nv.m3u8\n',
]
HLS_BYTES = [s.encode() for s in HLS_SEEDS]
DASH_SEED = (
    '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
    'availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT2S" '
    'minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011"><Period id="0" '
    'start="PT0S"><AdaptationSet mimeType="video/mp4" segmentAlignment="true">'
    '<SegmentTemplate timescale="1000" initialization="init-$RepresentationID$.m4s" '
    'media="chunk-$RepresentationID$-$Time$.m4s"><SegmentTimeline><S t="0" d="2000" r="3"/>'
    '</SegmentTimeline></SegmentTemplate><Representation id="1" bandwidth="800000" '
    'codecs="avc1.64000a" width="64" height="64"/></AdaptationSet></Period></MPD>'
)
HTTP_SEEDS = [
    b"GET /hls/live/index.m3u8?_HLS_msn=8&_HLS_part=1 HTTP/1.1\r\nHost: x\r\n"
    b"Range: bytes=0-99\r\nConnection: keep-alive\r\n\r\n",
    b'POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{"a": [1]}\n'
    b"HEAD /x.mp4 HTTP/1.0\r\nUser-Agent: a\r\nAccept: */*\r\n\r\n",
]
CONFIG_SEED = {
    "config": {"controller": {"interface": "127.0.0.1", "port": 4242},
               "protocols": [{"connector": "HTTP"}, {"connector": "RTMP", "port": 1935}],
               "triggers": {"PUSH_END": [{"handler": "http://x", "sync": False}]}},
    "streams": {"live": {"name": "live", "source": "push://"}},
    "account": {"admin": {"password": "0" * 32}},
    "autopushes": [["live", "rtmp://x/y"]],
}  # fmt: skip


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("flv_demux", _load_flv, lambda: _fixtures("h264_aac.flv")),
        Target("amf", _load_amf, _amf_seeds),
        Target("rtmp_chunks", _load_rtmp_chunks, lambda: [_rtmp_session()[0][3073:]]),
        Target("rtmp_server_handshake", _load_rtmp_server, lambda: [_rtmp_session()[0]]),
        Target("rtmp_client_handshake", _load_rtmp_client, lambda: [_rtmp_session()[1]]),
        Target("ts_demux", _load_ts, lambda: _fixtures("h264_aac.ts", "hevc_mp3.ts")),
        Target("ts_psi", _load_psi, _psi_seeds),
        Target(
            "mp4_demux", _load_mp4, lambda: _fixtures("h264_aac_faststart.mp4", "h264_aac_frag.mp4")
        ),
        Target("ebml_demux", _load_ebml, lambda: _fixtures("vp9_opus.webm", "hevc_ac3.mkv")),
        Target("ogg_demux", _load_ogg, lambda: _ffmpeg_audio("ogg")),
        Target("mp3_demux", _load_mp3, lambda: _ffmpeg_audio("mp3")),
        Target("hls_playlists", _load_hls, lambda: HLS_BYTES + _fixtures("hls/h264_aac.m3u8")),
        Target("dash_mpd", _load_dash, lambda: [DASH_SEED.encode()]),
        Target("http_request", _load_http, lambda: HTTP_SEEDS),
        Target("controller_config", _load_config, lambda: [json.dumps(CONFIG_SEED).encode()]),
        Target("analyser_flv", _analyser("flv"), lambda: _fixtures("h264_aac.flv")),
        Target("analyser_ts", _analyser("ts"), lambda: _fixtures("h264_aac.ts")),
        Target("analyser_mp4", _analyser("mp4"), lambda: _fixtures("h264_aac_frag.mp4")),
        Target("analyser_ebml", _analyser("ebml"), lambda: _fixtures("vp9_opus.webm")),
    ]
}


# ---- engines ---------------------------------------------------------------------------------


def _save(crash_dir: Path, name: str, data: bytes, exc: BaseException | str) -> str:
    """``<target>-<sha1>.hex``: the input in hex on the first line, then the error as
    ``#`` comment lines."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = crash_dir / f"{name}-{digest}.hex"
    why = exc if isinstance(exc, str) else repr(exc)
    path.write_text(data.hex() + "\n" + "".join(f"# {line}\n" for line in why.splitlines()))
    return str(path)


def _mutate(seed: bytes, ops: list[tuple[int, int, int]], other: bytes) -> bytes:
    """Byte-level mutations that hit length fields and structure, not only payload."""
    b = bytearray(seed)
    for op, where, value in ops:
        pos = where % (len(b) + 1)
        if op == 0 and b:
            b[pos % len(b)] ^= 1 << (value % 8)
        elif op == 1:
            b[pos : pos + 4] = value.to_bytes(4, "big")  # a size field gets a wild value
        elif op == 2:
            del b[pos:]
        elif op == 3:
            del b[pos : pos + value % 64 + 1]
        elif op == 4:
            b[pos:pos] = bytes([value & 0xFF]) * (value % 17 + 1)
        elif op == 5:
            chunk = other[value % max(len(other), 1) :][:256]
            b[pos:pos] = chunk  # splice in part of another seed
        elif op == 6 and b:
            b[pos % len(b)] = (0x00, 0xFF, 0x7F, 0x80, 0x01)[value % 5]
    return bytes(b)


def fuzz_in_process(name: str, seconds: float, crash_dir: Path) -> dict[str, Any]:
    """Hypothesis drives mutations of the seeds in batches until the time is up."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st

    target = TARGETS[name]
    parse, allowed = target.load()
    seeds = target.seeds() or [b""]
    crashes: dict[str, str] = {}
    count = 0

    deadline = time.monotonic() + seconds

    def attempt(data: bytes) -> None:
        nonlocal count
        if count >= 2 and time.monotonic() > deadline:
            return  # finish the batch quickly (but a loaded machine still tries something)
        count += 1
        try:
            parse(data)
        except allowed:
            pass
        except Exception as exc:  # the finding this suite exists for
            key = f"{type(exc).__name__}: {exc}"[:200]
            if key not in crashes:
                crashes[key] = _save(crash_dir, name, data, exc)

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        derandomize=False,  # fuzzing explores, whatever profile the test run loaded
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.integers(0, len(seeds) - 1),
        st.integers(0, len(seeds) - 1),
        st.integers(0, (1 << 32) - 1),
        st.binary(max_size=64),
    )
    def one(i: int, j: int, rng_seed: int, raw: bytes) -> None:
        attempt(raw)
        rng = random.Random(rng_seed)  # hypothesis picks the seeds; a cheap PRNG the edits
        for _ in range(MUTANTS):
            ops = [
                (rng.randrange(7), rng.randrange(1 << 20), rng.choice(INTERESTING))
                if rng.random() < 0.5
                else (rng.randrange(7), rng.randrange(1 << 20), rng.randrange(1 << 32))
                for _ in range(rng.randint(1, 6))
            ]
            attempt(_mutate(seeds[i], ops, seeds[j]))

    started = time.monotonic()
    batch = 0
    while time.monotonic() < deadline:
        hyp_seed(batch)(one)()
        batch += 1
    return {
        "engine": "hypothesis",
        "iterations": count,
        "seconds": round(time.monotonic() - started, 2),
        "crashes": len(crashes),
        "reproducers": sorted(crashes.values()),
        "errors": sorted(crashes),
    }


def fuzz_atheris(name: str, seconds: float, crash_dir: Path) -> dict[str, Any]:
    """libFuzzer via atheris in a child process (it exits when done or on a crash)."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=crash_dir))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(TARGETS[name].seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.suites.fuzz", name, str(seconds), str(corpus), str(work)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    runs = re.findall(r"#(\d+)\s", proc.stderr)
    done = re.search(r"Done (\d+) runs", proc.stderr)
    reproducers = []
    for artifact in sorted(work.glob("*-*")):
        if artifact.name.startswith(("crash-", "timeout-", "oom-", "leak-")):
            at = proc.stderr.find("Uncaught Python exception")
            tail = proc.stderr[at:][:1500] if at >= 0 else proc.stderr[-1500:]
            reproducers.append(_save(crash_dir, name, artifact.read_bytes(), tail or artifact.name))
    return {
        "engine": "atheris",
        "iterations": int(done.group(1)) if done else int(runs[-1]) if runs else 0,
        "seconds": round(time.monotonic() - started, 2),
        "crashes": len(reproducers),
        "reproducers": reproducers,
        "exit": proc.returncode,
    }


def _atheris_child(name: str, seconds: str, corpus: str, work: str) -> None:
    import atheris

    with atheris.instrument_imports(include=INSTRUMENT):
        parse, allowed = TARGETS[name].load()

    def one(data: bytes) -> None:
        try:
            parse(data)
        except allowed:
            pass

    argv = [sys.argv[0], f"-max_total_time={int(float(seconds))}", f"-artifact_prefix={work}/",
            "-timeout=20", "-rss_limit_mb=4096", "-print_final_stats=1", corpus]  # fmt: skip
    atheris.Setup(argv, one)
    atheris.Fuzz()


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run(quick: bool) -> dict[str, Any]:
    crash_dir = Path(tempfile.mkdtemp(prefix="mistpy-fuzz-"))
    long_s = float(os.environ.get("MIST_FUZZ_SECONDS", "60"))
    names = [n for n in os.environ.get("MIST_FUZZ_TARGETS", "").split(",") if n] or list(TARGETS)
    results: dict[str, Any] = {}
    if quick or not _has_atheris():
        for name in names:
            results[name] = fuzz_in_process(name, QUICK_S if quick else long_s, crash_dir)
    else:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            jobs = {n: pool.submit(fuzz_atheris, n, long_s, crash_dir) for n in names}
            results = {n: job.result() for n, job in jobs.items()}
    return {
        "targets": results,
        "crash_dir": str(crash_dir),
        "total_crashes": sum(r["crashes"] for r in results.values()),
        "total_iterations": sum(r["iterations"] for r in results.values()),
    }


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for docs/benchmarks.md (``bench.report``)."""
    targets = result.get("targets", {})
    engines = sorted({str(t.get("engine")) for t in targets.values()})
    crashing = sorted(name for name, t in targets.items() if t.get("crashes"))
    return [
        ("targets", f"{len(targets)} ({', '.join(engines)})"),
        ("iterations", f"{result.get('total_iterations', 0):,}"),
        (
            "crashes",
            f"{result.get('total_crashes', 0)}"
            + (f" in {', '.join(crashing)}" if crashing else ""),
        ),
    ]


if __name__ == "__main__":
    _atheris_child(*sys.argv[1:5])
