"""Sessions and triggers under load: 1,000 concurrent sessions reporting to a real controller.

A real ``MistController`` (no connectors) runs on free ports with a blocking ``USER_NEW``
and ``CONN_PLAY`` handler (an aiohttp server in its own process answering ``true``). This process plays
the outputs: 10 :class:`common.sessions.Reporter` s (as 10 output processes would) open
1,000 viewer sessions and report their byte counters every second.

* ``open_burst_*``: ``session_open`` (USER_NEW + session creation) for 900 sessions
  opened in bursts of 100 at once; ``open_p50_ms``/``open_p99_ms``: the last 100 opened
  one at a time while the 900 report (the decision latency one viewer sees).
* ``trigger_idle_*`` / ``trigger_loaded_*``: a blocking ``CONN_PLAY`` round trip
  (``common.triggers.fire_full_async``) with no sessions vs with the 1,000 sessions
  reporting; ``trigger_slowdown`` = loaded p99 / idle p99 (``_p50``: the medians, steadier
  on a loaded machine).
* ``clients_*_ms`` / ``totals_*_ms`` / ``prometheus_*_ms``: the ``clients`` and ``totals``
  API commands and the Prometheus page over HTTP, with 0 sessions (``*_idle_*``) and with
  the 1,000 sessions (``*_loaded_*``); ``*_slowdown`` = loaded p50 / idle p50.
* ``stats_tick_*_ms`` / ``stats_update_*_ms``: the controller's own time for its 1 s
  stats pass and for one counter report (up to 400 connections), from ``stats_timing``.
* ``stats_visible_s``: from bumping every counter by 1 MB to ``totals`` holding all of
  those bytes (bounded by the 1 s report interval and the 1 s stats tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

SESSIONS = 1000
REPORTERS = 10
TARGETS = {"trigger_slowdown": 2.0, "open_p99_ms": 50.0}
PROMETHEUS = "metrics"


class BenchError(RuntimeError):
    """The run cannot produce its figures (the message says which step failed)."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def _free_port() -> int:
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)


# The handler: an aiohttp server in its own process (keep-alive, no GIL shared with us).
HANDLER = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.Response(text="true")
app = web.Application()
app.router.add_post("/", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _api(port: int, obj: Any) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api2",
        data=json.dumps(obj).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return bytes(resp.read())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _measure(port: int, quick: bool) -> dict[str, Any]:
    from common import sessions, triggers

    result: dict[str, Any] = {}
    rounds = 100 if quick else 400

    async def trigger_round_trips() -> list[float]:
        out = []
        for i in range(rounds):
            t0 = time.perf_counter()
            reply = await triggers.fire_full_async(
                "CONN_PLAY", ["bench", "127.0.0.1", "HTTP", f"/bench.flv?{i}"], "bench"
            )
            out.append((time.perf_counter() - t0) * 1000)
            _check(reply is not None, f"CONN_PLAY round trip {i}: no answer from the controller")
            assert reply is not None
            _check(reply.configured, "CONN_PLAY: the controller has no handler configured")
            _check(reply.allow, f"CONN_PLAY round trip {i}: the handler refused ({reply})")
        return out

    def timed(obj: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        reply = _api(port, obj)
        return (time.perf_counter() - t0) * 1000, reply

    def timed_get(path: str) -> float:
        t0 = time.perf_counter()
        body = _get(port, path)
        _check(b"mist_sessions_total" in body, f"{path}: not MistServer's Prometheus page")
        return (time.perf_counter() - t0) * 1000

    async def stats_views(n: int) -> dict[str, list[float]]:
        """Answer times of the views an operator polls: clients, totals, Prometheus."""
        out: dict[str, list[float]] = {"clients": [], "totals": [], "prometheus": []}
        for _ in range(n):
            ms, reply = await asyncio.to_thread(timed, {"clients": {"fields": ["sessid", "down"]}})
            _check("clients" in reply, f"clients: unexpected reply {str(reply)[:200]}")
            out["clients"].append(ms)
            ms, reply = await asyncio.to_thread(timed, {"totals": {"fields": ["clients"]}})
            _check("totals" in reply, f"totals: unexpected reply {str(reply)[:200]}")
            out["totals"].append(ms)
            out["prometheus"].append(await asyncio.to_thread(timed_get, f"/{PROMETHEUS}"))
        return out

    views_idle = await stats_views(10 if quick else 30)
    idle = await trigger_round_trips()
    reporters = [sessions.Reporter(f"BENCH{i}") for i in range(REPORTERS)]
    conns: list[sessions.Connection] = []
    open_ms: list[float] = []

    async def open_one(i: int) -> None:
        t0 = time.perf_counter()
        conn = await reporters[i % REPORTERS].open(
            f"bench{i % 20}", f"10.{i // 250}.{i % 250}.1", token=f"t{i}", url="/x"
        )
        open_ms.append((time.perf_counter() - t0) * 1000)
        _check(conn.allowed, f"session {i} was not admitted (USER_NEW/CONN_OPEN answer lost?)")
        conns.append(conn)

    for wave in range(0, SESSIONS - 100, 100):
        await asyncio.gather(*(open_one(i) for i in range(wave, wave + 100)))
    burst_ms, open_ms = open_ms, []
    await asyncio.sleep(1.5)
    for i in range(SESSIONS - 100, SESSIONS):  # one at a time, 900 sessions reporting
        await open_one(i)
    for conn in conns:
        conn.down = 1000
    await asyncio.sleep(2.5)  # every reporter reported at least twice
    loaded = await trigger_round_trips()

    views_loaded = await stats_views(10 if quick else 30)
    _, reply = await asyncio.to_thread(timed, {"clients": {"fields": ["sessid"]}})
    listed = len(reply["clients"]["data"])
    _check(listed >= SESSIONS, f"clients lists {listed} sessions, {SESSIONS} are open")

    # Counters jump by 1 MB per connection: how long until totals holds all those bytes?
    t0 = time.perf_counter()
    since = int(time.time())
    for conn in conns:
        conn.down += 1_000_000
    visible = None
    while time.perf_counter() - t0 < 10:
        _, reply = await asyncio.to_thread(
            timed, {"totals": {"fields": ["downbps"], "start": since}}
        )
        if sum(r[0] for r in reply["totals"]["data"]) >= SESSIONS * 1_000_000:
            visible = time.perf_counter() - t0
            break
        await asyncio.sleep(0.05)
    _check(visible is not None, "totals never held the bumped byte counters within 10 s")
    timing = (await asyncio.to_thread(_api, port, {"stats_timing": True})).get("stats_timing")
    _check(isinstance(timing, dict), "the controller does not answer stats_timing")
    for reporter in reporters:
        await reporter.aclose()

    result.update(
        sessions=SESSIONS,
        clients_listed=listed,
        open_burst_p50_ms=_pct(burst_ms, 0.5),
        open_burst_p99_ms=_pct(burst_ms, 0.99),
        open_p50_ms=_pct(open_ms, 0.5),
        open_p99_ms=_pct(open_ms, 0.99),
        trigger_idle_p50_ms=_pct(idle, 0.5),
        trigger_idle_p99_ms=_pct(idle, 0.99),
        trigger_loaded_p50_ms=_pct(loaded, 0.5),
        trigger_loaded_p99_ms=_pct(loaded, 0.99),
        trigger_slowdown=round(_pct(loaded, 0.99) / max(_pct(idle, 0.99), 1e-6), 2),
        trigger_slowdown_p50=round(_pct(loaded, 0.5) / max(_pct(idle, 0.5), 1e-6), 2),
        stats_visible_s=round(visible, 3) if visible is not None else None,
        stats_tick_p50_ms=timing["tick_p50_ms"],
        stats_tick_p99_ms=timing["tick_p99_ms"],
        stats_update_p50_ms=timing["update_p50_ms"],
        stats_update_p99_ms=timing["update_p99_ms"],
    )
    for view in ("clients", "totals", "prometheus"):
        idle_p50 = statistics.median(views_idle[view])
        loaded_p50 = statistics.median(views_loaded[view])
        result[f"{view}_idle_p50_ms"] = round(idle_p50, 3)
        result[f"{view}_loaded_p50_ms"] = round(loaded_p50, 3)
        result[f"{view}_loaded_p99_ms"] = _pct(views_loaded[view], 0.99)
        result[f"{view}_slowdown"] = round(loaded_p50 / max(idle_p50, 1e-6), 2)
    return result


def run(quick: bool) -> dict[str, Any]:
    hook_port = _free_port()
    handler = subprocess.Popen([sys.executable, "-c", HANDLER, str(hook_port)])
    url = f"http://127.0.0.1:{hook_port}/"
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        config = Path(tmp) / "config.json"
        hook = [{"handler": url, "sync": True}]
        config.write_text(
            json.dumps(
                {
                    "account": {},
                    "config": {
                        "controller": {},
                        "protocols": [],
                        "accesslog": "",
                        "triggers": {"USER_NEW": hook, "CONN_PLAY": hook},
                    },
                    "streams": {},
                }
            )
        )
        env = dict(os.environ, MIST_NO_BUILTIN="1", MIST_CONTROL=f"127.0.0.1:{port}")
        env.pop("MIST_CHILD", None)
        argv = ["-c", str(config), "-p", str(port), "-i", "127.0.0.1", "-g", "2"]
        argv += ["-S", PROMETHEUS]
        proc = subprocess.Popen(
            [sys.executable, "-c", "from controller.cli import main; main()", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        saved = {k: os.environ.get(k) for k in ("MIST_CONTROL", "MIST_CHILD")}
        os.environ.update(MIST_CONTROL=f"127.0.0.1:{port}", MIST_CHILD="1")
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    _api(port, {"minimal": 1})
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise BenchError("the controller did not start") from None
                    time.sleep(0.1)
            while True:  # the handler must answer, or every trigger measures a failure
                try:
                    socket.create_connection(("127.0.0.1", hook_port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or handler.poll() is not None:
                        raise BenchError("the trigger handler did not start") from None
                    time.sleep(0.1)
            result = asyncio.run(_measure(port, quick))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            handler.terminate()
            try:
                handler.wait(10)
            except subprocess.TimeoutExpired:
                handler.kill()
                handler.wait()
    result["targets"] = TARGETS
    return result


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Headline rows for docs/benchmarks.md: each figure with 0 vs 1,000 live sessions."""
    rows = [
        (
            "trigger decision (CONN_PLAY round trip) p50 / p99",
            f"{result['trigger_idle_p50_ms']} / {result['trigger_idle_p99_ms']} ms idle, "
            f"{result['trigger_loaded_p50_ms']} / {result['trigger_loaded_p99_ms']} ms with "
            f"{result['sessions']:,} sessions (ratio p50 {result.get('trigger_slowdown_p50')}, "
            f"p99 {result['trigger_slowdown']})",
        ),
        (
            "session open (USER_NEW + CONN_OPEN) p50 / p99",
            f"{result['open_p50_ms']} / {result['open_p99_ms']} ms while {result['sessions']:,}"
            " report",
        ),
    ]
    for view in ("clients", "totals", "prometheus"):
        rows.append(
            (
                f"{view} answer p50",
                f"{result[f'{view}_idle_p50_ms']} ms idle, {result[f'{view}_loaded_p50_ms']} ms "
                f"with {result['sessions']:,} sessions (ratio {result[f'{view}_slowdown']})",
            )
        )
    rows.append(
        (
            "stats tick p50 / p99",
            f"{result['stats_tick_p50_ms']} / {result['stats_tick_p99_ms']} ms; counters "
            f"visible in totals after {result['stats_visible_s']} s",
        )
    )
    return rows
