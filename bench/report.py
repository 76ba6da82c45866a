"""The Markdown report ``python -m bench all`` writes into ``docs/benchmarks.md``.

Only the part between the two markers is generated; the rest of the file (targets, how
to rerun) is written by hand and kept. A missing file or missing markers get a minimal
page with the markers at its end.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from bench.peers import nginx_version

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
MAX_CELL = 160


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


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], out)
        return
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    out.append((prefix, text.replace("|", "\\|")))


def render(results: dict[str, dict[str, Any]], quick: bool, info: dict[str, str]) -> str:
    lines = [
        START,
        f"## Latest figures ({'quick' if quick else 'full'} runs, {info['date']})",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items() if k != "date") + ".",
        "",
        "| suite | figure | value |",
        "|---|---|---|",
    ]
    for suite in sorted(results):
        rows: list[tuple[str, str]] = []
        _flatten("", results[suite], rows)
        for key, text in rows:
            lines.append(f"| {suite} | {key} | {text} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(path: Path, results: dict[str, dict[str, Any]], quick: bool) -> None:
    block = render(results, quick, machine())
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
