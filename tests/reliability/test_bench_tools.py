"""The shared benchmark pieces the reliability suite also uses: the nginx peer, the load
clients (checked against nginx-rtmp and nginx's static files, and by ffprobe), and the
report writer that must keep the hand-written part of docs/benchmarks.md."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import loadclient as lc
from bench import publisher, report
from bench.peers import Nginx, nginx_available
from bench.suites import shm as bench_shm

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tools") / "src.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "4", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "25", "-x264-params", "log-level=none",
         "-c:a", "aac", "-f", "flv", str(out)],
        check=True,
    )  # fmt: skip
    return out


def test_read_flv_tags_matches_ffprobe(flv: Path) -> None:
    tags = lc.read_flv_tags(flv)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=codec_type,pts_time", "-of", "json", str(flv)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    packets = json.loads(probe.stdout)["packets"]
    # frames are the tags of packet type 1 (0: sequence header, 2: end of sequence)
    for kind in ("video", "audio"):
        mine = [t for t in tags if t.kind == kind and t.body[1] == 1]
        theirs = [p for p in packets if p["codec_type"] == kind]
        assert len(mine) == len(theirs)
    last_audio = max(float(p["pts_time"]) for p in packets if p["codec_type"] == "audio")
    assert max(t.timestamp for t in tags if t.kind == "audio") == round(last_audio * 1000)
    truncated = flv.with_suffix(".cut.flv")
    truncated.write_bytes(flv.read_bytes()[:-5])  # into the last tag (end of sequence)
    assert len(lc.read_flv_tags(truncated)) == len(tags) - 1
    junk = flv.with_name("junk.flv")
    junk.write_bytes(b"not an flv at all")
    with pytest.raises(lc.LoadError):
        lc.read_flv_tags(junk)


@pytest.mark.skipif(not nginx_available(), reason="nginx with the RTMP module not installed")
def test_publisher_and_viewers_against_nginx(flv: Path, tmp_path: Path) -> None:
    tags = lc.read_flv_tags(flv)
    sent = sum(len(t.body) for t in tags)
    (tmp_path / "seg.ts").write_bytes(bytes(range(256)) * 1000)
    with Nginx(rtmp=True, http_root=tmp_path) as ngx:

        async def main() -> tuple[lc.PublishStats, lc.ViewerStats, lc.GetStats]:
            import asyncio

            pub = asyncio.ensure_future(
                lc.rtmp_publisher("127.0.0.1", ngx.rtmp_port, "live", "k", tags)
            )
            await asyncio.sleep(0.5)
            view = asyncio.ensure_future(
                lc.rtmp_viewer("127.0.0.1", ngx.rtmp_port, "live", "k", 4.0)
            )
            gets = await lc.http_get_loop("127.0.0.1", ngx.http_port, ["/seg.ts"], 1.0)
            return await pub, await view, gets

        pub, view, gets = lc.run(main())
    assert pub.done and not pub.error and pub.sent_tags == len(tags)
    assert pub.sent_bytes > sent  # the payload plus chunk headers
    assert pub.max_lag < 0.5  # paced by the timestamps, never behind
    assert view.status == 1 and not view.error
    assert 0.4 * sent < view.bytes < 1.2 * sent  # joined 0.5 s late, at a keyframe
    assert gets.requests > 10 and gets.errors == 0 and gets.bytes == gets.requests * 256_000


def test_report_keeps_the_hand_written_part(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# B\n\nintro\n\n{report.START}\nold\n{report.END}\n\n## Later\n\nkept\n")
    results = {
        "s": {
            "a_ratio": 1.5,
            "b": {"median": 3, "spread": [2, 4], "runs": [2, 3, 4]},
            "steps_done": [1, 2],
            "t_error": "x|y",
            "targets": {"p50_ms": 10},
        }
    }
    report.write(doc, results, quick=True)
    text = doc.read_text()
    assert text.startswith("# B\n\nintro\n\n" + report.START)
    assert text.endswith(report.END + "\n\n## Later\n\nkept\n")
    assert "old" not in text
    # headline figures only: medians with their spread, ratios; lists and settings not
    assert "| s | a_ratio | 1.5 |" in text and "| s | b | 3 (spread 2-4) |" in text
    assert "x\\|y" in text and "steps_done" not in text and "targets" not in text
    assert "Machine: cpu:" in text
    # every figure is in the JSON beside it
    details = json.loads((tmp_path / report.JSON_NAME).read_text())
    assert details["results"] == results and details["quick"] is True
    fresh = tmp_path / "new.md"
    report.write(fresh, {"s": {"a": 1}}, quick=False)
    assert report.START in fresh.read_text() and "full runs" in fresh.read_text()


def test_report_uses_a_suites_own_summary() -> None:
    step = {"viewers": 200, "kept": 200, "server_cpu_percent": 15.0,
            "load_cpu_busiest_percent": 3.1, "load_processes": 1}  # fmt: skip
    fig = {"max_kept_median": 200, "max_kept_runs": [200, 200], "spread": [200, 200],
           "last_run_steps": [step]}  # fmt: skip
    fanout = {"mistpy_rtmp": fig, "nginx_rtmp": fig, "ratio_rtmp_mistpy_over_nginx": 1.0,
              "steps": [50, 200]}  # fmt: skip
    rows = dict(report.summarize("fanout", fanout))
    assert rows["viewers kept, mistpy_rtmp"].startswith("200 (runs 200, 200); at 200: 200 kept")
    assert rows["ratio_rtmp_mistpy_over_nginx"] == "1.0"
    # figures of another shape fall back to the generic rows instead of failing
    assert dict(report.summarize("fanout", {"mistpy_rtmp": [1], "ratio_x": 2})) == {"ratio_x": "2"}


def test_stamp_scanner_finds_stamps_split_anywhere(flv: Path) -> None:
    tags = publisher.stamp_tags(lc.read_flv_tags(flv))
    frames = [t for t in tags if t.kind == "video" and t.body[1] == 1]
    assert frames and all(publisher.STAMP_UUID in t.body for t in frames)
    stamped = publisher.stamp_now(b"".join(t.body for t in frames))
    for cut in (1, 7, 31, 32, 33, 1000):
        scanner = publisher.StampScanner()
        found = [
            ns for i in range(0, len(stamped), cut) for ns in scanner.feed(stamped[i : i + cut])
        ]
        assert len(found) == len(frames) and len(set(found)) == 1
    # placeholders (never stamped) are not stamps
    assert publisher.StampScanner().feed(b"".join(t.body for t in frames)) == []


@pytest.mark.skipif(not nginx_available(), reason="nginx with the RTMP module not installed")
def test_stamped_source_through_nginx(flv: Path) -> None:
    """Every frame's stamp crosses a real server and arrives after it was sent."""
    tags = publisher.stamp_tags(lc.read_flv_tags(flv))
    with Nginx(rtmp=True) as ngx:
        arrivals: list[tuple[float, int]] = []
        scanner = publisher.StampScanner()

        def on_data(data: bytes, now: float) -> None:
            arrivals.extend((now, ns) for ns in scanner.feed(data))

        async def main() -> lc.ViewerStats:
            import asyncio

            pub = asyncio.ensure_future(
                lc.rtmp_publisher("127.0.0.1", ngx.rtmp_port, "live", "s", tags, stamp=True)
            )
            await asyncio.sleep(0.5)
            view = await lc.rtmp_viewer(
                "127.0.0.1", ngx.rtmp_port, "live", "s", 3.0, on_data=on_data
            )
            await pub
            return view

        view = lc.run(main())
    assert view.status == 1 and not view.error
    assert len(arrivals) > 40  # 25 fps for ~3 s, from the joining keyframe on
    assert all(now * 1e9 >= ns for now, ns in arrivals)  # sent before it arrived
    sent = [ns for _, ns in arrivals]
    assert sent == sorted(sent)


@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")), reason="the C floor needs a C compiler"
)
def test_native_floor_measures_every_reader_and_packet(tmp_path: Path) -> None:
    """The C floor of ``bench shm`` builds, and reports one hand-off per (reader, packet)
    plus the readers' CPU per wake-up (figures are the bench's business, not checked)."""
    exe = bench_shm.native_floor_binary(tmp_path)
    assert exe is not None
    lat, cpu_s = bench_shm.native_floor_round(exe, readers=3, packets=40)
    assert len(lat) == 3 * 40
    assert all(0 < ns < 60 * 10**9 for ns in lat)  # stamped before, seen after, same run
    assert cpu_s > 0
