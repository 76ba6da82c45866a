"""The servers the benchmarks measure, started on free loopback ports: ours
(``MistOutputs``) and the peers they are compared against (``Nginx``).

``MistOutputs`` runs MistOutRTMP and MistOutHTTP standalone (no controller: a pushed
stream gets its MistInBuffer from MistOutRTMP, which MistOutHTTP then reads from the
bus), the live path the fan-out and latency figures are about.

``Nginx`` runs Debian's nginx from a config written into a temp folder (``daemon off``,
error log and pid there too) with the RTMP module (``live`` application) and/or a static
file server. One process by default (``master_process off``), as the design's reference
figures were taken with one worker; ``workers > 1`` turns the master on and adds
``rtmp_auto_push`` so live streams reach every worker.

    with Nginx(rtmp=True, http_root=folder) as ngx:
        ngx.rtmp_url("live", "key"), ngx.http_port, ngx.pids()

Suites of every kind should use this (and ``bench.loadclient``) so the peer set-up is the
same for every figure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import psutil

NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


class PeerError(RuntimeError):
    """A peer could not be started (not installed, bad config, port never opened)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout: float = 20
) -> None:
    """Poll until ``127.0.0.1:port`` accepts; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise PeerError(f"{what} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise PeerError(f"{what} did not listen on {port} within {timeout} s") from None
            time.sleep(0.05)


def nginx_available(rtmp: bool = True) -> bool:
    return shutil.which("nginx") is not None and (not rtmp or NGINX_MODULE.exists())


def nginx_version() -> str:
    try:
        res = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return res.stderr.strip().removeprefix("nginx version: ")


class Nginx:
    """nginx-rtmp and/or nginx serving ``http_root`` statically (keep-alive, sendfile)."""

    def __init__(
        self,
        rtmp: bool = True,
        http_root: Path | None = None,
        workers: int = 1,
        connections: int = 16384,
        chunk_size: int = 4096,
    ) -> None:
        if not rtmp and http_root is None:
            raise ValueError("nothing to serve: rtmp=False and no http_root")
        self.rtmp = rtmp
        self.http_root = http_root
        self.workers = workers
        self.connections = connections
        self.chunk_size = chunk_size
        self.rtmp_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder = Path()

    def config(self) -> str:
        lines = []
        if self.rtmp:
            lines.append(f"load_module {NGINX_MODULE};")
        lines += [
            "daemon off;",
            f"master_process {'on' if self.workers > 1 else 'off'};",
            f"worker_processes {self.workers};",
            f"error_log {self.folder}/error.log error;",
            f"pid {self.folder}/nginx.pid;",
            "worker_rlimit_nofile 65536;",
            f"events {{ worker_connections {self.connections}; }}",
        ]
        if os.geteuid() == 0 and self.workers > 1:
            lines.insert(0, "user root;")  # workers must read the temp folder
        if self.rtmp:
            auto = "rtmp_auto_push on;\n" if self.workers > 1 else ""
            lines.append(
                f"{auto}rtmp {{ server {{ listen 127.0.0.1:{self.rtmp_port}; "
                f"chunk_size {self.chunk_size};\n"
                "  application live { live on; record off; wait_key on; } } }"
            )
        if self.http_root is not None:
            tmp = self.folder
            lines.append(
                "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
                f"  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;\n"
                f"  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;\n"
                "  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; video/mp4 mp4 m4s;\n"
                "          video/x-flv flv; }\n"
                f"  server {{ listen 127.0.0.1:{self.http_port}; root {self.http_root}; }} }}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> Nginx:
        if not nginx_available(self.rtmp):
            raise PeerError("nginx (with libnginx-mod-rtmp) is not installed")
        self.folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        if self.rtmp:
            self.rtmp_port = free_port()
        if self.http_root is not None:
            self.http_port = free_port()
        conf = self.folder / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [
                "nginx",
                "-c",
                str(conf),
                "-p",
                str(self.folder),
                "-e",
                str(self.folder / "error.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in (self.rtmp_port, self.http_port):
                if port:
                    wait_port(port, self.proc, "nginx")
        except PeerError as exc:
            log = self.error_log()
            self.stop()
            raise PeerError(f"{exc}: {log[-2000:]}") from None
        return self

    def error_log(self) -> str:
        try:
            return (self.folder / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def rtmp_url(self, app: str, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def pids(self) -> list[int]:
        """Every nginx process of this instance (the master and its workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        """SIGQUIT (graceful), SIGTERM after 5 s, SIGKILL after 10; then remove the folder."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGQUIT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.folder != Path():
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (empty once it is gone)."""
    try:
        main = psutil.Process(pid)
        return [main.pid, *(c.pid for c in main.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds so far of each process still there."""
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


@contextmanager
def live_servers(nginx: bool = True) -> Iterator[tuple[MistOutputs, Nginx | None]]:
    """Our outputs and, when installed (and ``nginx``), nginx-rtmp beside them."""
    with MistOutputs() as mist:
        ngx = Nginx().start() if nginx and nginx_available() else None
        try:
            yield mist, ngx
        finally:
            if ngx is not None:
                ngx.stop()


class MistOutputs:
    """Our MistOutRTMP (which starts a MistInBuffer per pushed stream) and MistOutHTTP,
    standalone on free loopback ports: ``rtmp_port``, ``http_port``, ``pids()``."""

    def __init__(self, http: bool = True) -> None:
        self.http = http
        self.rtmp_port = 0
        self.http_port = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> MistOutputs:
        env = dict(os.environ, UDP_API=f"127.0.0.1:{free_port()}")
        for var in ("MIST_CONTROL", "MIST_CHILD"):
            env.pop(var, None)
        self.rtmp_port = free_port()
        wanted = [(self.rtmp_port, "outputs.rtmp.server")]
        if self.http:
            self.http_port = free_port()
            wanted.append((self.http_port, "outputs.http.server"))
        try:
            for port, module in wanted:
                proc = subprocess.Popen(
                    [sys.executable, "-m", module, "-p", str(port), "-i", "127.0.0.1", "-g", "2"],
                    env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                self.procs.append(proc)
                wait_port(port, proc, module)
        except PeerError:
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        """Both outputs and every live buffer they started."""
        return [pid for proc in self.procs for pid in process_tree(proc.pid)]

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> MistOutputs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
