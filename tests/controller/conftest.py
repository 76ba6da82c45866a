"""Run the real MistController on free ports with a temp config and the dummy programs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable
DUMMY = Path(__file__).with_name("dummy_connector.py")
CONTROLLER = [
    PY,
    "-c",
    "import sys; from controller.cli import main; sys.argv[0] = 'MistController'; main()",
]


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 (the API uses the same number for both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_for(
    pred: Callable[[], Any], timeout: float = 10.0, step: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def make_programs(bindir: Path) -> None:
    """``MistOutDummy`` and ``MistInDummy`` wrappers around the dummy script."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name, role in (("MistOutDummy", "connector"), ("MistInDummy", "input")):
        path = bindir / name
        path.write_text(f'#!/bin/sh\nDUMMY_ROLE={role} exec "{PY}" "{DUMMY}" "$@"\n')
        path.chmod(0o755)


def post(
    port: int,
    obj: Any,
    path: str = "/api",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Any:
    data = raw if raw is not None else json.dumps(obj).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body)


def udp_request(port: int, obj: Any, timeout: float = 5.0, raw: bytes | None = None) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(raw if raw is not None else json.dumps(obj).encode(), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65536)
    return json.loads(data)


@dataclass
class Mist:
    tmp: Path
    port: int
    config: Path
    env: dict[str, str]
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    logfile: Path = field(default_factory=Path)

    def start(self, wait: bool = True) -> Mist:
        self.logfile = self.tmp / "controller.stderr"
        with open(self.logfile, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    *CONTROLLER,
                    "-c",
                    str(self.config),
                    "-p",
                    str(self.port),
                    "-i",
                    "127.0.0.1",
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env,
            )
        if wait:
            wait_for(self.ready, 90, 0.05, "the controller API")  # slow on a loaded machine
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited {self.proc.returncode}: {self.stderr()}")
        try:
            post(self.port, {"minimal": 1}, "/api2")
        except (OSError, ValueError):
            return False
        return True

    def api(self, obj: Any, path: str = "/api", headers: dict[str, str] | None = None) -> Any:
        return post(self.port, obj, path, headers)

    def udp(self, obj: Any, timeout: float = 5.0) -> Any:
        return udp_request(self.port, obj, timeout)

    def stderr(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("controller did not stop on SIGTERM") from None

    def protocol_online(self, connector: str = "Dummy") -> Any:
        protos = self.api({"minimal": 1, "config": True}, "/api2")["config"]["protocols"]
        return [p.get("online") for p in protos if p.get("connector") == connector]


def base_config(port: int, dummy_port: int | None = None, **extra: Any) -> dict[str, Any]:
    protocols = [{"connector": "Dummy", "port": dummy_port, "greeting": "hi"}] if dummy_port else []
    cfg: dict[str, Any] = {
        "account": {},
        "config": {"controller": {}, "protocols": protocols, "triggers": {}, "serverid": "test"},
        "streams": {"live": {"name": "live", "source": "push://"}},
        "custom_top_level": {"kept": True},
    }
    cfg["config"].update(extra)
    return cfg


def _factory(tmp_path: Path, made: list[Mist]) -> Callable[..., Mist]:
    bindir = tmp_path / "bin"
    make_programs(bindir)

    def factory(
        config: dict[str, Any] | None = None,
        args: list[str] | None = None,
        start: bool = True,
        builtin: bool = False,
    ) -> Mist:
        port = free_port()
        cfg_path = tmp_path / "config.json"
        if config is not None:
            cfg_path.write_text(json.dumps(config, indent=1))
        env = dict(os.environ)
        env["MIST_PROGRAM_PATH"] = str(bindir)
        if not builtin:
            env["MIST_NO_BUILTIN"] = "1"
        env.pop("MIST_CONTROL", None)
        env.pop("MIST_CHILD", None)
        mist = Mist(tmp_path, port, cfg_path, env, list(args or []))
        made.append(mist)
        if start:
            mist.start()
        return mist

    return factory


def _stop_all(made: list[Mist]) -> None:
    for mist in made:
        if mist.proc is not None and mist.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                mist.stop()


@pytest.fixture
def mist_factory(tmp_path: Path) -> Iterator[Callable[..., Mist]]:
    """Start controllers: ``mist_factory(config_dict_or_None, args=[...], start=True)``."""
    made: list[Mist] = []
    yield _factory(tmp_path, made)
    _stop_all(made)


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mist]]:
    """As ``mist_factory`` but the controllers live for the whole test module."""
    made: list[Mist] = []
    yield _factory(tmp_path_factory.mktemp("mist"), made)
    _stop_all(made)
