"""Soak (on demand): a live stream with 200 viewers for an hour; the RSS and open
descriptors of every process must stay flat (the assertion is on the trend).

    MIST_RELIABILITY_LONG=1 python -m pytest -m slow tests/reliability -k soak -s

``MIST_SOAK_S`` (default 3600) and ``MIST_SOAK_SAMPLE_S`` (default 60) shorten it for a
trial run; ``MIST_SOAK_VIEWERS`` (default 200) sets the audience, half HTTP-FLV, half RTMP.
The series and a summary per process (first/last, least-squares slope per hour over the
samples after the first third) are written as JSON to ``MIST_SOAK_REPORT`` (default
``soak.json`` in the test's temp folder) and printed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.loadclient import LoadThread, ViewerStats, http_viewer, rtmp_viewer
from tests.reliability.conftest import LONG, program_of, start_server, stop_server, wait_for

SECONDS = float(os.environ.get("MIST_SOAK_S", "3600"))
SAMPLE_S = float(os.environ.get("MIST_SOAK_SAMPLE_S", "60"))
VIEWERS = int(os.environ.get("MIST_SOAK_VIEWERS", "200"))
MIB = 1 << 20

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.skipif(not LONG, reason="long mode only: MIST_RELIABILITY_LONG=1"),
]


def slope_per_hour(times: list[float], values: list[int]) -> float:
    """Least-squares slope of ``values`` over ``times`` (s), per hour."""
    if len(times) < 2:
        return 0.0
    mt, mv = statistics.fmean(times), statistics.fmean(values)
    den = sum((t - mt) ** 2 for t in times)
    return (
        sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / den * 3600
        if den
        else 0.0
    )


def summarize(times: list[float], series: list[dict[str, tuple[int, int]]]) -> dict[str, Any]:
    """Per process: RSS (MiB) and descriptors first/last, and their slope per hour after
    the first third (warm-up: caches, pages, allocator arenas)."""
    out: dict[str, Any] = {}
    skip = len(series) // 3
    for name in series[0]:
        rows = [(t, s[name]) for t, s in zip(times, series, strict=True) if name in s]
        ts = [t for t, _ in rows][skip:]
        rss = [v[0] for _, v in rows]
        fds = [v[1] for _, v in rows]
        out[name] = {
            "rss_mib_first_last": [round(rss[0] / MIB, 1), round(rss[-1] / MIB, 1)],
            "rss_mib_per_hour": round(slope_per_hour(ts, rss[skip:]) / MIB, 2),
            "fds_first_last": [fds[0], fds[-1]],
            "fds_per_hour": round(slope_per_hour(ts, fds[skip:]), 2),
        }
    return out


def sample(pids: dict[str, int]) -> dict[str, tuple[int, int]]:
    out = {}
    for name, pid in pids.items():
        try:
            p = psutil.Process(pid)
            out[name] = (p.memory_info().rss, p.num_fds())
        except psutil.NoSuchProcess:
            pass
    return out


def flat(values: list[int], slack: int, share: float) -> bool:
    """The last third's median is within ``slack`` + ``share`` of the middle third's
    (the first third is warm-up: caches, pages, allocator arenas)."""
    third = max(1, len(values) // 3)
    middle = statistics.median(values[third : 2 * third] or values)
    last = statistics.median(values[2 * third :] or values)
    return last <= middle * (1 + share) + slack


@pytest.mark.timeout(int(SECONDS) + 900)
def test_soak_live_stream_with_viewers(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    load = LoadThread()
    try:
        srv.push_live(seconds=int(SECONDS) + 300)  # outlives the soak
        kids = srv.children()
        pids = {"MistController": srv.pid}
        for name, procs in kids.items():
            if name == "MistInMP4":
                continue  # the VoD input idles out when nobody watches it: by design
            for p in procs:
                pids[f"{name}:{p.pid}"] = p.pid
        stats = [ViewerStats() for _ in range(VIEWERS)]
        futs = []
        for i, st in enumerate(stats):
            if i % 2:
                coro = http_viewer("127.0.0.1", srv.http, f"/{srv.live}.flv", SECONDS, st, 5.0)
            else:
                coro = rtmp_viewer("127.0.0.1", srv.rtmp, "live", srv.live, SECONDS, st, 5.0)
            futs.append(load.submit(coro))
        wait_for(lambda: all(s.bytes for s in stats), 60, 0.5, "every viewer playing")
        series: list[dict[str, tuple[int, int]]] = []
        times: list[float] = []
        load_start = os.getloadavg()
        t0 = time.monotonic()
        end = t0 + SECONDS - 5
        while time.monotonic() < end:
            times.append(time.monotonic() - t0)
            series.append(sample(pids))
            time.sleep(min(SAMPLE_S, max(0.0, end - time.monotonic())))
        times.append(time.monotonic() - t0)
        series.append(sample(pids))
        for f in futs:
            f.result(120)
        report = {
            "seconds": SECONDS,
            "viewers": VIEWERS,
            "sample_s": SAMPLE_S,
            "load_average_start_end": [load_start, os.getloadavg()],
            "viewer_max_gap_s": round(max(st.max_gap for st in stats), 2),
            "viewer_mib_received_min": round(min(st.bytes for st in stats) / MIB, 1),
            "processes": summarize(times, series),
            "series": {"t": [round(t, 1) for t in times], "samples": series},
        }
        out = Path(os.environ.get("MIST_SOAK_REPORT") or tmp_path / "soak.json")
        out.write_text(json.dumps(report, indent=1))
        print(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=1))
        # every process lived through it (no restarts) and stayed flat
        for name in pids:
            assert all(name in s for s in series), f"{name} died during the soak"
            rss = [s[name][0] for s in series]
            fds = [s[name][1] for s in series]
            assert flat(rss, 8 * MIB, 0.05), f"{name} RSS grows: {[r // MIB for r in rss]} MiB"
            assert flat(fds, 5, 0.0), f"{name} fds grow: {fds}"
        for st in stats:
            assert not st.error and not st.closed, st
            assert st.max_gap < 5.0, f"a viewer stalled {st.max_gap:.1f} s"
        # the same programs still run (nothing crashed and came back)
        now = {f"{program_of(p)}:{p.pid}" for ps in srv.children().values() for p in ps}
        assert {k for k in pids if ":" in k} <= now
    finally:
        load.close()
        stop_server(srv)
