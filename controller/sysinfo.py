"""Host facts for the API: ``load``, the machine part of ``capabilities``, ``browse``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import psutil


def load() -> dict[str, int]:
    """``{mem, shm, cpu}`` in percent, as MistServer's ``load``."""
    vm = psutil.virtual_memory()
    try:
        shm = shutil.disk_usage("/dev/shm")
        shm_pct = round(100 * shm.used / shm.total) if shm.total else 0
    except OSError:
        shm_pct = 0
    return {
        "mem": round(vm.percent),
        "shm": shm_pct,
        "cpu": round(psutil.cpu_percent(interval=None)),
    }


def capability_info() -> dict[str, Any]:
    """``cpu``, ``mem`` (MiB) and ``load`` (x100) members of ``capabilities``."""
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    freq = psutil.cpu_freq()
    one, five, fifteen = os.getloadavg()
    mib = 1024 * 1024
    return {
        "cpu": [
            {
                "cores": psutil.cpu_count(logical=False) or 1,
                "threads": psutil.cpu_count() or 1,
                "mhz": int(freq.current) if freq else 0,
            }
        ],
        "mem": {
            "total": vm.total // mib,
            "free": vm.free // mib,
            "used": vm.used // mib,
            "cached": getattr(vm, "cached", 0) // mib,
            "swaptotal": sw.total // mib,
            "swapfree": sw.free // mib,
        },
        "load": {"one": int(one * 100), "five": int(five * 100), "fifteen": int(fifteen * 100)},
        "cpu_use": round(psutil.cpu_percent(interval=None) * 10),
    }


def browse(roots: list[Path], path: str) -> dict[str, Any]:
    """List ``path`` (absolute or relative to the first root) if it lies inside a root.

    Symlinks are resolved before the check, so neither ``..`` nor a link can leave the
    allowed folders.
    """
    if not roots:
        return {"error": "browsing is not configured"}
    base = roots[0]
    target = Path(path) if path and os.path.isabs(path) else base / (path or ".")
    real = Path(os.path.realpath(target))
    allowed = [Path(os.path.realpath(r)) for r in roots]
    if not any(real == r or r in real.parents for r in allowed):
        return {
            "error": f"{path!r} is outside the folders that may be browsed",
            "path": [str(allowed[0])],
        }
    try:
        entries = sorted(os.scandir(real), key=lambda e: e.name)
    except OSError as exc:
        return {"error": f"cannot list {real}: {exc.strerror}", "path": [str(real)]}
    subdirs: list[str] = []
    files: list[str] = []
    for entry in entries:
        try:
            (subdirs if entry.is_dir() else files).append(entry.name)
        except OSError:
            continue
    return {"path": [str(real)], "subdirectories": subdirs, "files": files}
