"""The Markdown report ``python -m bench all`` writes into ``docs/benchmarks.md``, and
every figure of the run into ``docs/benchmarks.json`` beside it.

The Markdown is short: per suite its headline figures (a suite module may define
``summary(result) -> [(figure, text)]``; otherwise medians with their spread, ratios,
latencies and rates are picked from the top level). Only the part between the two
markers is generated; the rest of the file (targets, how
to rerun) is written by hand and kept. A missing file or missing markers get a minimal
page with the markers at its end.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from bench.peers import nginx_version

JSON_NAME = "benchmarks.json"
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
MAX_CELL = 200


def stepped_summary(runs: list[int], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A stepped suite's result: the last step kept in each run, median and spread."""
    return {
        "max_kept_median": statistics.median(runs),
        "max_kept_runs": runs,
        "spread": [min(runs), max(runs)],
        "last_run_steps": steps,
    }


def _first_line(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr) else "?"


def machine() -> dict[str, str]:
    """What the figures were measured on (they only compare within one machine)."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import av

        pyav = f"{av.__version__} (FFmpeg {av.ffmpeg_version_info})"
    except ImportError:
        pyav = "not installed"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "ffmpeg": _first_line(["ffmpeg", "-version"])
        .removeprefix("ffmpeg version ")
        .split(" Copyright")[0],
        "pyav": pyav,
        "nginx": nginx_version(),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
    }


HEADLINE = re.compile(
    r"ratio|p50|p99|per_s|per_viewer|per_stream|max_kept|ttfb|handoff|kept|crashes|error"
)
SKIP = re.compile(
    r"^(targets|quick|steps|seconds|window|load_average|capped)|(_samples|_readers|keep_ratio)$"
)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _median_row(value: dict[str, Any]) -> str | None:
    """``median (spread lo-hi)`` of a ``{median|max_kept_median, spread}`` figure."""
    for key in ("median", "max_kept_median"):
        if key in value:
            text = _num(value[key])
            spread = value.get("spread")
            if isinstance(spread, list) and len(spread) == 2:
                text += f" (spread {_num(spread[0])}-{_num(spread[1])})"
            return text
    return None


def headline(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures of a suite without its own ``summary``: medians with their spread,
    ratios, latencies and rates at the top level; lists and settings stay in the JSON."""
    rows: list[tuple[str, str]] = []
    for key in sorted(result):
        value = result[key]
        if SKIP.search(key):
            continue
        if isinstance(value, dict):
            text = _median_row(value)
            if text is None:
                for sub in ("max_kept_median", "median"):
                    if sub in value:
                        text = _num(value[sub])
            if text is not None:
                rows.append((key, text))
        elif not isinstance(value, list) and HEADLINE.search(key):
            rows.append((key, _num(value)))
    return rows


def summarize(suite: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    """The suite's own ``summary(result)`` if it has one, else ``headline``."""
    if "error" in result and len(result) == 1:
        return [("error", str(result["error"]))]
    try:
        mod = importlib.import_module(f"bench.suites.{suite}")
    except ImportError:
        mod = None
    own = getattr(mod, "summary", None)
    if callable(own):
        try:
            rows: list[tuple[str, str]] = own(result)
            return rows
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # figures of another shape (an older run): the generic rows
    return headline(result)


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def render(results: dict[str, dict[str, Any]], quick: bool, info: dict[str, str]) -> str:
    lines = [
        START,
        f"## Latest figures ({'quick' if quick else 'full'} runs, {info['date']})",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items() if k != "date") + ".",
        "",
        f"Headline figures per suite; every figure of the run is in `{JSON_NAME}`.",
        "",
        "| suite | figure | value |",
        "|---|---|---|",
    ]
    for suite in sorted(results):
        for key, text in summarize(suite, results[suite]):
            lines.append(f"| {suite} | {_cell(key)} | {_cell(text)} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(path: Path, results: dict[str, dict[str, Any]], quick: bool) -> None:
    """The Markdown block into ``path``; the whole run as JSON beside it."""
    info = machine()
    block = render(results, quick, info)
    details = {"machine": info, "quick": quick, "results": results}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(JSON_NAME).write_text(json.dumps(details, indent=1, sort_keys=True) + "\n")
    try:
        old = path.read_text()
    except OSError:
        old = "# Benchmarks\n\nSee `bench/` and DESIGN.md section 5.\n\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = old.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
