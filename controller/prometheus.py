"""MistServer's Prometheus endpoint (reference 3.6): ``GET /<path>`` and ``/<path>.json``.

The text form is written by hand in the exposition format 0.0.4 (``# HELP``/``# TYPE``
then samples); names and labels are MistServer's ``mist_*`` (plus ``stat_bw_total``).
Per-stream values restart when the stream ends (STREAM_END), so they are gauges; the
server-wide ``*_total`` values are counters. The JSON form is the compact object
MistServer's load balancer reads.
Memory is in MiB, CPU in tenths of a percent, as in ``capabilities``.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import psutil

from controller import sysinfo

if TYPE_CHECKING:
    from controller.server import Controller
    from controller.stats import Monitor

BW_LIMIT_DEFAULT = 128 * 1024 * 1024  # MistServer's "gigabit default limit" (bytes/s)
SESS_TYPES = (("viewer", "viewers"), ("input", "incoming"), ("output", "outgoing"))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {value}")
        else:
            self.lines.append(f"{name} {value}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _facts(ctl: Controller) -> dict[str, Any]:
    info = sysinfo.capability_info()
    try:
        shm = shutil.disk_usage("/dev/shm")
        shm_total, shm_used = shm.total // (1024 * 1024), shm.used // (1024 * 1024)
    except OSError:
        shm_total = shm_used = 0
    net = psutil.net_io_counters()
    bandwidth = ctl.store.data.get("bandwidth")
    limit = bandwidth.get("limit") if isinstance(bandwidth, dict) else None
    return {
        "cpu": info["cpu_use"],
        "mem_total": info["mem"]["total"],
        "mem_used": info["mem"]["used"],
        "shm_total": shm_total,
        "shm_used": shm_used,
        "net_up": net.bytes_sent if net else 0,
        "net_down": net.bytes_recv if net else 0,
        "bwlimit": limit if isinstance(limit, int) and limit > 0 else BW_LIMIT_DEFAULT,
    }


def _current(mon: Monitor) -> dict[str, int]:
    counts = {"viewer": 0, "input": 0, "output": 0, "unspecified": 0}
    mono = time.monotonic()
    for sess in mon.sessions.sessions.values():
        if sess.current(mono):
            counts[sess.kind] = counts.get(sess.kind, 0) + 1
    return counts


def _per_output(mon: Monitor) -> dict[str, int]:
    out: dict[str, int] = {}
    mono = time.monotonic()
    for sess in mon.sessions.sessions.values():
        if sess.kind == "viewer" and sess.current(mono):
            out[sess.connector] = out.get(sess.connector, 0) + 1
    return out


def text(ctl: Controller, mon: Monitor) -> str:
    facts = _facts(ctl)
    table = mon.sessions
    curr = _current(mon)
    t = _Text()
    t.family("mist_logs", "counter", "Count of log messages since controller start.")
    t.sample("mist_logs", ctl.logbook.count)
    t.family("mist_cpu", "gauge", "Total CPU usage in tenths of percent.")
    t.sample("mist_cpu", facts["cpu"])
    for name, help_text in (
        ("mist_mem_total", "Total system memory in MiB."),
        ("mist_mem_used", "Used system memory in MiB."),
        ("mist_shm_total", "Total shared memory in MiB."),
        ("mist_shm_used", "Used shared memory in MiB."),
    ):
        t.family(name, "gauge", help_text)
        t.sample(name, facts[name.removeprefix("mist_")])
    total_vs = sum(int(a.viewseconds) for a in table.accs.values())
    t.family("mist_viewseconds_total", "counter", "Seconds watched by viewers (active streams).")
    t.sample("mist_viewseconds_total", total_vs)
    t.family("mist_sessions_count", "gauge", "Current sessions by type.")
    for kind, label in (*SESS_TYPES, ("unspecified", "unspecified")):
        t.sample("mist_sessions_count", curr.get(kind, 0), sessType=label)
    t.family("stat_bw_total", "counter", "Bytes through all network interfaces.")
    t.sample("stat_bw_total", facts["net_up"], direction="up")
    t.sample("stat_bw_total", facts["net_down"], direction="down")
    t.family("mist_bw_total", "counter", "Bytes of media connections since controller start.")
    t.sample("mist_bw_total", table.total["up"], direction="up")
    t.sample("mist_bw_total", table.total["down"], direction="down")
    t.family("mist_bw_other", "counter", "Network bytes not from media connections.")
    t.sample("mist_bw_other", max(0, facts["net_up"] - table.total["down"]), direction="up")
    t.sample("mist_bw_other", max(0, facts["net_down"] - table.total["up"]), direction="down")
    t.family("mist_bw_limit", "gauge", "Configured bandwidth limit in bytes per second.")
    t.sample("mist_bw_limit", facts["bwlimit"])
    t.family("mist_packets_total", "counter", "Packets of media connections.")
    t.sample("mist_packets_total", table.total["packets"], pkttype="sent")
    t.sample("mist_packets_total", table.total["lost"], pkttype="lost")
    t.sample("mist_packets_total", table.total["retrans"], pkttype="retrans")
    t.family("mist_outputs", "gauge", "Current viewers per connector.")
    for connector, count in sorted(_per_output(mon).items()):
        t.sample("mist_outputs", count, output=connector)
    t.family("mist_sessions_total", "counter", "Sessions since controller start by type.")
    for kind, label in (*SESS_TYPES, ("unspecified", "unspecified")):
        t.sample("mist_sessions_total", table.started_by_kind.get(kind, 0), sessType=label)
    t.sample("mist_sessions_total", table.cached_denials, sessType="cached")
    names = mon.stats_names()
    by_stream = mon.counts_by_stream()  # one pass, not one per stream
    t.family("mist_sessions", "gauge", "Current sessions per stream and type.")
    for name in names:
        counts = mon.stream_counts(name, by_stream)
        for key, label in (("viewers", "viewers"), ("inputs", "incoming"), ("outputs", "outgoing")):
            t.sample("mist_sessions", counts[key], stream=name, sessType=label)
        t.sample("mist_sessions", counts["unspecified"], stream=name, sessType="unspecified")
    t.family("mist_viewcount", "gauge", "Viewer sessions per stream since it became active.")
    for name in names:
        t.sample("mist_viewcount", mon.stream_field(name, "views"), stream=name)
    t.family("mist_viewseconds", "gauge", "Viewer seconds per stream (since it became active).")
    for name in names:
        t.sample("mist_viewseconds", mon.stream_field(name, "viewseconds"), stream=name)
    t.family("mist_bw", "gauge", "Bytes per stream (since it became active).")
    for name in names:
        t.sample("mist_bw", mon.stream_field(name, "upbytes"), stream=name, direction="up")
        t.sample("mist_bw", mon.stream_field(name, "downbytes"), stream=name, direction="down")
    t.family("mist_packets", "gauge", "Packets per stream (since it became active).")
    for name in names:
        for field, label in (
            ("packsent", "sent"),
            ("packloss", "lost"),
            ("packretrans", "retrans"),
        ):
            t.sample("mist_packets", mon.stream_field(name, field), stream=name, pkttype=label)
    stats = mon.triggers.stats_view()
    for metric, key, help_text in (
        ("mist_trigger_count", "count", "Trigger handler runs."),
        ("mist_trigger_time", "ms", "Milliseconds spent in trigger handlers."),
        ("mist_trigger_fails", "fails", "Failed trigger handler runs."),
    ):
        t.family(metric, "counter", help_text)
        for trigger, values in stats.items():
            t.sample(metric, values[key], trigger=trigger)
    return t.render()


def as_json(ctl: Controller, mon: Monitor) -> dict[str, Any]:
    facts = _facts(ctl)
    table = mon.sessions
    curr = _current(mon)
    streams: dict[str, Any] = {}
    by_stream = mon.counts_by_stream()
    for name in mon.stats_names():
        counts = mon.stream_counts(name, by_stream)
        streams[name] = {
            "tot": [
                mon.stream_field(name, "views"),
                0,
                0,
                0,
            ],
            "bw": [mon.stream_field(name, "upbytes"), mon.stream_field(name, "downbytes")],
            "curr": [counts["viewers"], counts["inputs"], counts["outputs"], counts["unspecified"]],
            "pkts": [
                mon.stream_field(name, "packsent"),
                mon.stream_field(name, "packloss"),
                mon.stream_field(name, "packretrans"),
            ],
            "rep": mon.stream_field(name, "viewseconds"),
        }
    location = ctl.store.data["config"].get("location")
    return {
        "cpu": facts["cpu"],
        "mem_total": facts["mem_total"],
        "mem_used": facts["mem_used"],
        "shm_total": facts["shm_total"],
        "shm_used": facts["shm_used"],
        "logs": ctl.logbook.count,
        "curr": [
            curr["viewer"],
            curr["input"],
            curr["output"],
            curr["unspecified"],
            table.cached_denials,
        ],
        "tot": [
            table.started_by_kind["viewer"],
            table.started_by_kind["input"],
            table.started_by_kind["output"],
            table.started_by_kind["unspecified"],
            table.cached_denials,
        ],
        "st": [facts["net_up"], facts["net_down"]],
        "bw": [table.total["up"], table.total["down"]],
        "pkts": [table.total["packets"], table.total["lost"], table.total["retrans"]],
        "bwlimit": facts["bwlimit"],
        "triggers": mon.triggers.stats_view(),
        "loc": location if isinstance(location, dict) else {},
        "obw": [
            max(0, facts["net_up"] - table.total["down"]),
            max(0, facts["net_down"] - table.total["up"]),
        ],
        "streams": streams,
        "output_counts": _per_output(mon),
        "conf_streams": sorted(ctl.store.data["streams"]),
        "tags": sorted({t for n in mon.stats_names() for t in mon.stream_tags(n)}),
        "outputs": {},
    }
