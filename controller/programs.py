"""Finding the installed Mist* programs and collecting their capabilities (``-j``).

MistServer runs every ``Mist*`` binary next to itself with ``-j``; removing a binary
removes the feature. Here the programs are

* the ``MistIn*``/``MistOut*``/``MistProc*`` console scripts of the mistpy distribution
  whose module can be imported (declared-but-unwritten programs cost nothing), and
* executables named ``Mist*`` in the directories of ``MIST_PROGRAM_PATH``
  (``os.pathsep``-separated; used for third-party programs and by tests).
  ``MIST_NO_BUILTIN=1`` hides the mistpy console scripts (tests that want only
  their own programs); ``MIST_PROGRAMS=MistOutHTTP,MistInMP4`` keeps only those names.

``-j`` runs in parallel with a timeout; results are cached by the program file's
mtime/size, in memory and in a JSON file, so a restart does not rerun unchanged programs.
A program that fails is skipped with a log line.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIXES = {"MistOut": "connectors", "MistIn": "inputs", "MistProc": "processes"}
CAPA_TIMEOUT_S = 15.0
PARALLEL = 4


@dataclass(frozen=True)
class Program:
    name: str  # MistOutRTMP
    argv: tuple[str, ...]  # how to run it (arguments follow)
    stamp: str  # changes when the program changes

    @property
    def group(self) -> str:
        for prefix, group in PREFIXES.items():
            if self.name.startswith(prefix):
                return group
        return "other"

    @property
    def short(self) -> str:
        for prefix in PREFIXES:
            if self.name.startswith(prefix):
                return self.name[len(prefix) :]
        return self.name


def _file_stamp(path: str | None) -> str:
    if not path:
        return "?"
    try:
        st = os.stat(path)
    except OSError:
        return "?"
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


def _module_origin(module: str) -> str | None:
    """The module's file, or None when it cannot be imported (not written yet)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def discover(extra_dirs: list[str] | None = None) -> dict[str, Program]:
    """The installed programs by name (cheap: no process is started)."""
    found: dict[str, Program] = {}
    try:
        eps = importlib.metadata.entry_points(group="console_scripts")
    except Exception:
        eps = importlib.metadata.EntryPoints(())
    bindir = Path(sys.executable).parent
    if os.environ.get("MIST_NO_BUILTIN") == "1":
        eps = importlib.metadata.EntryPoints(())
    for ep in eps:
        if not ep.name.startswith(tuple(PREFIXES)) or (ep.dist and ep.dist.name != "mistpy"):
            continue
        origin = _module_origin(ep.module)
        if origin is None:
            continue
        script = bindir / ep.name
        if script.is_file() and os.access(script, os.X_OK):
            argv: tuple[str, ...] = (str(script),)
        else:
            code = f"import sys;from {ep.module} import {ep.attr};sys.argv[0]={ep.name!r};sys.exit({ep.attr}())"
            argv = (sys.executable, "-c", code)
        found[ep.name] = Program(ep.name, argv, _file_stamp(origin))
    dirs = extra_dirs if extra_dirs is not None else _env_dirs()
    for directory in dirs:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if (
                entry.name.startswith(tuple(PREFIXES))
                and entry.is_file()
                and os.access(entry.path, os.X_OK)
            ):
                found[entry.name] = Program(entry.name, (entry.path,), _file_stamp(entry.path))
    only = {n.strip() for n in os.environ.get("MIST_PROGRAMS", "").split(",") if n.strip()}
    if only:
        found = {n: p for n, p in found.items() if n in only}
    return found


def _env_dirs() -> list[str]:
    return [d for d in os.environ.get("MIST_PROGRAM_PATH", "").split(os.pathsep) if d]


class CapabilityCache:
    """``-j`` results per program, refreshed when a program appears or changes."""

    def __init__(self, cache_file: Path | None, log: Callable[[str, str], None]) -> None:
        self.cache_file = cache_file
        self.log = log
        self.programs: dict[str, Program] = {}
        self.capa: dict[str, dict[str, Any]] = {}  # program name -> capa JSON
        self._stamps: dict[str, str] = {}
        self._failed: dict[
            str, str
        ] = {}  # name -> stamp that failed (not retried until it changes)
        self._load_file()

    def _load_file(self) -> None:
        if self.cache_file is None:
            return
        try:
            data = json.loads(self.cache_file.read_text())
            for name, entry in data.items():
                self.capa[name] = entry["capa"]
                self._stamps[name] = entry["stamp"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.capa.clear()
            self._stamps.clear()

    def _save_file(self) -> None:
        if self.cache_file is None:
            return
        data = {
            n: {"capa": c, "stamp": self._stamps[n]}
            for n, c in self.capa.items()
            if n in self._stamps
        }
        tmp = self.cache_file.with_name(self.cache_file.name + f".tmp-{os.getpid()}")
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.cache_file)
        except OSError:
            pass

    async def refresh(
        self, env: dict[str, str], on_cached: Callable[[], None] | None = None
    ) -> bool:
        """Rediscover programs and run ``-j`` for new/changed ones; True if anything changed.

        ``on_cached`` is called once the programs are known and before any ``-j`` runs, so
        the caller can start what the cached capabilities already describe.
        """
        programs = await asyncio.to_thread(discover)
        changed = set(programs) != set(self.programs)
        self.programs = programs
        for gone in [
            n for n in self.capa if n not in programs or self._stamps.get(n) != programs[n].stamp
        ]:
            del self.capa[gone]
            changed = True
        if changed and on_cached is not None:
            on_cached()
        todo = [
            p
            for p in programs.values()
            if self._stamps.get(p.name) != p.stamp and self._failed.get(p.name) != p.stamp
        ]
        if todo:
            sem = asyncio.Semaphore(PARALLEL)
            results = await asyncio.gather(*(self._ask(p, env, sem) for p in todo))
            for prog, capa in zip(todo, results, strict=True):
                if capa is None:
                    self._failed[prog.name] = prog.stamp
                    self._stamps.pop(prog.name, None)
                    continue
                self.capa[prog.name] = capa
                self._stamps[prog.name] = prog.stamp
                changed = True
            self._save_file()
        return changed

    async def _ask(
        self, prog: Program, env: dict[str, str], sem: asyncio.Semaphore
    ) -> dict[str, Any] | None:
        async with sem:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *prog.argv,
                    "-j",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            except OSError as exc:
                self.log("WARN", f"{prog.name} -j could not start: {exc}")
                return None
            try:
                out, err = await asyncio.wait_for(proc.communicate(), CAPA_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                self.log("WARN", f"{prog.name} -j timed out after {CAPA_TIMEOUT_S:.0f} s; skipped")
                return None
            except asyncio.CancelledError:  # controller shutting down: leave no process behind
                if proc.returncode is None:
                    proc.kill()
                    await asyncio.shield(proc.wait())
                raise
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            self.log("WARN", f"{prog.name} -j failed (exit {proc.returncode}): {tail[0]}; skipped")
            return None
        try:
            capa = json.loads(out)
        except ValueError:
            self.log("WARN", f"{prog.name} -j printed no valid JSON; skipped")
            return None
        if not isinstance(capa, dict):
            self.log(
                "WARN", f"{prog.name} -j printed {type(capa).__name__}, not an object; skipped"
            )
            return None
        return capa

    def by_group(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"connectors": {"RTMP": capa}, "inputs": {...}, "processes": {...}}``."""
        out: dict[str, dict[str, dict[str, Any]]] = {"connectors": {}, "inputs": {}}
        for name, capa in sorted(self.capa.items()):
            prog = self.programs.get(name)
            if prog is None:
                continue
            out.setdefault(prog.group, {})[prog.short] = capa
        return out

    def connector(self, short: str) -> tuple[Program, dict[str, Any]] | None:
        name = "MistOut" + short
        prog = self.programs.get(name)
        capa = self.capa.get(name)
        return (prog, capa) if prog is not None and capa is not None else None

    def input(self, short: str) -> tuple[Program, dict[str, Any]] | None:
        name = "MistIn" + short
        prog = self.programs.get(name)
        capa = self.capa.get(name)
        return (prog, capa) if prog is not None and capa is not None else None
