"""The controller's JSON config file: load, validate, write atomically, notice outside edits.

Shape as MistServer's (reference 2.3): ``account``, ``config`` (``controller``,
``protocols[]``, ``triggers``, ``debug``, ...), ``streams``, ``auto_push``, ...
Unknown keys are kept as they are. Runtime-only members (``online``, ``error``, ``log``)
are never written.

Writes are crash-safe: the new text goes to a temp file in the same directory which is
fsynced, the current file is hard-linked to ``<file>.bak`` (the previous version), the
temp file is renamed over the config and the directory is fsynced. A ``kill -9`` at any
moment leaves either the old or the new file, both complete.

A file that does not parse is never overwritten: :class:`ConfigError` names the file
and the line/column, and the controller exits with it.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from common.errors import CliError

RUNTIME_KEYS = ("online", "error", "log")
DEFAULT_FILE = "config.json"  # MistServer's default, relative to the working directory


class ConfigError(CliError):
    """The config file cannot be used; the message names the file and position."""


def strip_runtime(value: Any) -> Any:
    """A deep copy without runtime-only members (at any depth below the top level)."""
    if isinstance(value, dict):
        return {k: strip_runtime(v) for k, v in value.items() if k not in RUNTIME_KEYS}
    if isinstance(value, list):
        return [strip_runtime(v) for v in value]
    return value


def parse_config_text(text: str, path: Path) -> dict[str, Any]:
    """Parse and shape-check config text; :class:`ConfigError` with the position on failure."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            f" (char {exc.pos}); fix or remove it, it will not be overwritten"
        ) from None
    problem = shape_problem(data)
    if problem:
        raise ConfigError(f"config file {path}: {problem}")
    return data


# Members the controller reads, with the JSON type they must have when present.
SHAPE: tuple[tuple[str, str, type, str], ...] = (
    ("", "config", dict, "object"),
    ("", "streams", dict, "object"),
    ("", "account", dict, "object"),
    ("", "ui_settings", dict, "object"),
    ("config", "protocols", list, "array"),
    ("config", "controller", dict, "object"),
    ("config", "triggers", dict, "object"),
)


def shape_problem(data: Any) -> str:
    """Why ``data`` cannot be used as a config ("" when it can)."""
    if not isinstance(data, dict):
        return f"the top level must be a JSON object, not {type(data).__name__}"
    for parent, key, kind, word in SHAPE:
        holder = data.get(parent, {}) if parent else data
        if isinstance(holder, dict) and key in holder and not isinstance(holder[key], kind):
            where = f"{parent}.{key}" if parent else key
            return f"{where!r} must be a JSON {word}"
    for item in data.get("config", {}).get("protocols", []):
        if not isinstance(item, dict):
            return "every entry of 'config.protocols' must be a JSON object"
    for name, conf in data.get("streams", {}).items():
        if not isinstance(conf, dict):
            return f"stream {name!r} must be a JSON object"
    for name, acc in data.get("account", {}).items():
        if not isinstance(acc, dict) or not isinstance(acc.get("password"), str):
            return f"account {name!r} must be an object with a password"
    return ""


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Fill in the members the controller relies on (in place) and apply legacy upgrades."""
    data.setdefault("account", {})
    cfg = data.setdefault("config", {})
    cfg.setdefault("protocols", [])
    cfg.setdefault("controller", {})
    cfg.setdefault("triggers", {})
    data.setdefault("streams", {})
    data.setdefault("ui_settings", {})
    if isinstance(data.get("autopushes"), list) and "auto_push" not in data:
        data["auto_push"] = {str(i): p for i, p in enumerate(data.pop("autopushes"))}
    protos = [p for p in cfg["protocols"] if isinstance(p, dict)]
    for proto in protos:
        if proto.get("connector") == "SRT":
            proto["connector"] = "SubRip"
    cfg["protocols"] = [p for p in protos if p.get("connector") not in ("HSS", "DASH")]
    return data


class ConfigStore:
    """The in-memory config plus its file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup_path = path.with_name(path.name + ".bak")
        self.data: dict[str, Any] = normalise({})
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of what we last read/wrote

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any]:
        """Read the file (must exist); raises :class:`ConfigError`."""
        try:
            raw = self.path.read_bytes()
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"config file {self.path}: cannot read: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {self.path}: not UTF-8 at byte {exc.start}") from None
        self.data = normalise(parse_config_text(text, self.path))
        self._stamp = (st.st_mtime_ns, st.st_size)
        self.remove_stale_temps()
        return self.data

    def changed_on_disk(self) -> bool:
        """True if someone else replaced/edited the file since we last read or wrote it."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size) != self._stamp

    def mark_seen(self) -> None:
        """Accept the file's current stamp (after a failed reload) so it is not retried every tick."""
        try:
            st = os.stat(self.path)
        except OSError:
            return
        self._stamp = (st.st_mtime_ns, st.st_size)

    def to_text(self) -> str:
        return json.dumps(strip_runtime(self.data), indent=2, sort_keys=False) + "\n"

    def save(self) -> None:
        """Write atomically with a backup of the previous version (see module docstring)."""
        text = self.to_text().encode()
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self.path.name}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.path.exists():
            bak_tmp = directory / f".{self.backup_path.name}.tmp-{os.getpid()}"
            try:
                if bak_tmp.exists():
                    bak_tmp.unlink()
                os.link(self.path, bak_tmp)  # the old inode lives on as the backup
                os.replace(bak_tmp, self.backup_path)
            except OSError:
                pass  # a missing backup must not stop the write
        os.replace(tmp, self.path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        st = os.stat(self.path)
        self._stamp = (st.st_mtime_ns, st.st_size)

    def remove_stale_temps(self) -> None:
        """Temp files left by a writer that was killed mid-write."""
        for pattern in (f".{self.path.name}.tmp-*", f".{self.backup_path.name}.tmp-*"):
            for stale in self.path.parent.glob(pattern):
                try:
                    pid = int(stale.name.rsplit("-", 1)[1])
                except ValueError:
                    continue
                if pid == os.getpid() or not _pid_alive(pid):
                    try:
                        stale.unlink()
                    except OSError:
                        pass

    def snapshot(self) -> dict[str, Any]:
        """A deep copy without runtime members (``config_backup``)."""
        return copy.deepcopy(strip_runtime(self.data))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
