"""The running controller: config, API servers, capabilities and the supervision loop.

One asyncio loop does everything. Signal handlers only put events on a queue; the
main loop (:meth:`Controller.run`) wakes every :data:`TICK_S` (or when something
changed), handles queued events, notices config file edits, turns the config into
the set of processes that should run and lets the supervisor reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from common.log import DEFAULT_DEBUG
from common.streamname import base_name, sanitize
from controller import prometheus
from controller.auth import Authenticator, challenge_for, md5hex
from controller.config_store import ConfigError, ConfigStore, normalise
from controller.default_config import DATA_DIR, DEMO_FILE, build_default, make_demo_clip
from controller.desired import connector_specs, input_spec
from controller.http_api import HttpApi
from controller.logbook import Logbook, LogbookHandler
from controller.programs import CapabilityCache
from controller.stats import STAT_FIELDS, Monitor
from controller.supervisor import Child, Spec, State, Supervisor
from controller.udp_api import UdpApi
from controller.version import RELEASE, VERSION

TICK_S = 0.5
FILE_CHECK_S = 1.0
CAPA_REFRESH_S = 30.0
DEFAULT_STALL_S = 30.0
STATUS_NAMES = {
    0: "Offline",
    1: "Initializing",
    2: "Input booting",
    3: "Waiting for data",
    4: "Online",
    5: "Shutting down",
}


@dataclass
class Options:
    config: Path
    port: int | None = None
    interface: str | None = None
    debug: int | None = None
    account: str | None = None
    logfile: str | None = None
    accesslog: str | None = None
    prometheus: str | None = None


def _shm() -> Any:
    """The shared-memory cleanup module, if the bus is installed yet."""
    try:
        import shm.cleanup as cleanup
    except ImportError:
        return None
    return cleanup


class Controller:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.store = ConfigStore(options.config)
        self.data_dir = options.config.parent / DATA_DIR
        self.logbook = Logbook(DEFAULT_DEBUG)
        if options.logfile:
            self.logbook.open_file(options.logfile)
        LogbookHandler.install(self.logbook)
        self.auth = Authenticator(self.store.data["account"])
        self.caps = CapabilityCache(self.data_dir / "capabilities-cache.json", self.logbook.emit)
        self.supervisor = Supervisor(
            self.logbook, self.child_env, DEFAULT_STALL_S, self.child_exited
        )
        self.iid = secrets.token_hex(8)
        self.started = time.time()
        self.port = 0
        self.udp_address: tuple[str, int] = ("127.0.0.1", 0)
        self.events: asyncio.Queue[str] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.online: dict[int, Any] = {}  # protocol index -> online value
        self.http: HttpApi | None = None
        self.udp: UdpApi | None = None
        self.monitor = Monitor(self)  # triggers, sessions, statistics
        self.source_overrides: dict[str, str] = {}  # STREAM_SOURCE answers

    # ---- startup ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load (or create) the config and apply the command-line settings. Raises ConfigError."""
        if self.store.exists():
            self.store.load()
        else:
            demo = self.data_dir / DEMO_FILE
            if not demo.exists():
                try:
                    make_demo_clip(demo)
                except Exception as exc:
                    self.logbook.emit("WARN", f"could not generate the demo clip {demo}: {exc}")
            self.store.data = build_default(self.data_dir, demo if demo.exists() else None)
            normalise(self.store.data)
            self.store.save()
            self.logbook.emit(
                "CONF", f"No config file found: wrote a default one to {self.store.path}"
            )
        self.auth.accounts = self.store.data["account"]
        cfg = self.store.data["config"]
        changed = False
        if self.options.account:
            user, _, password = self.options.account.partition(":")
            if not user or not password:
                raise ConfigError("-a/--account needs user:password", 2)
            self.store.data["account"][user] = {"password": md5hex(password)}
            changed = True
        for key, value in (
            ("prometheus", self.options.prometheus),
            ("accesslog", self.options.accesslog),
        ):
            if value is not None and cfg.get(key) != value:
                cfg[key] = value
                changed = True
        if changed:
            self.store.save()
        self.apply_settings()

    def apply_settings(self) -> None:
        cfg = self.store.data["config"]
        debug = self.options.debug if self.options.debug is not None else cfg.get("debug")
        self.logbook.debug = debug if isinstance(debug, int) else DEFAULT_DEBUG
        stall = cfg.get("stall_timeout", DEFAULT_STALL_S)
        self.supervisor.stall_timeout = (
            float(stall) if isinstance(stall, (int, float)) else DEFAULT_STALL_S
        )

    def api_port(self) -> int:
        if self.options.port is not None:
            return self.options.port
        port = self.store.data["config"]["controller"].get("port")
        return port if isinstance(port, int) and 0 < port < 65536 else 4242

    def api_interface(self) -> str:
        if self.options.interface:
            return self.options.interface
        iface = self.store.data["config"]["controller"].get("interface")
        return iface if isinstance(iface, str) and iface else "0.0.0.0"

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, event in (
            (signal.SIGTERM, "stop"),
            (signal.SIGINT, "stop"),
            (signal.SIGHUP, "reload"),
        ):
            loop.add_signal_handler(sig, self.events.put_nowait, event)
        self.port = self.api_port()
        # UDP first: a client that saw the HTTP API answer may use the UDP API at once
        # (uvloop binds a datagram socket only after yielding to the loop)
        udp_transport = await self._start_udp(loop)
        self.http = HttpApi(self)
        runner = web.AppRunner(self.http.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.api_interface(), self.api_port(), reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            udp_transport.close()
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.api_interface()}:{self.api_port()}: {exc.strerror}"
            ) from None
        self.logbook.emit(
            "INFO",
            f"API listening on http://{self.api_interface()}:{self.port}/api, UDP {self.udp_address[0]}:{self.udp_address[1]}",
        )
        self._cleanup_shm(startup=True)
        self.monitor.start()
        refresher = asyncio.create_task(self._refresh_caps_loop(), name="capabilities")
        from controller import pushes  # auto pushes already in the config start at boot

        push_manager = pushes.attach(self)
        try:
            if await self.monitor.events.system_start():
                await self._main_loop()
            else:
                self.logbook.emit("WARN", "SYSTEM_START trigger refused: shutting down")
        finally:
            await push_manager.close()  # recordings finish while their inputs still run
            await self.monitor.stop()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await self.supervisor.stop_all()
            self._cleanup_shm()
            if self.store.changed_on_disk() is False:
                self.save_config()
            udp_transport.close()
            await runner.cleanup()
            self.logbook.emit("INFO", "Controller stopped")
        return 0

    async def _start_udp(self, loop: asyncio.AbstractEventLoop) -> asyncio.DatagramTransport:
        env = os.environ.get("UDP_API", "").removeprefix("udp://")
        host, port = "127.0.0.1", self.port
        if ":" in env:
            host, _, p = env.rpartition(":")
            port = int(p) if p.isdigit() else port
        self.udp = UdpApi(self)
        for candidate in (port, 0):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self.udp or UdpApi(self),
                    local_addr=(host, candidate),
                    family=socket.AF_INET,
                )
            except OSError as exc:
                self.logbook.emit(
                    "WARN", f"UDP API: cannot bind {host}:{candidate}: {exc.strerror}"
                )
                continue
            self.udp_address = transport.get_extra_info("sockname")[:2]
            return transport
        raise ConfigError("cannot bind the UDP API")

    async def _main_loop(self) -> None:
        last_file_check = 0.0
        while True:
            while not self.events.empty():
                event = self.events.get_nowait()
                if event == "stop" and not await self.monitor.events.system_stop(
                    "shutdown requested"
                ):
                    self.logbook.emit("WARN", "SYSTEM_STOP trigger refused the shutdown")
                    continue
                if event == "stop":
                    self.logbook.emit("INFO", "Shutting down")
                    return
                if event == "reload":
                    self.reload_config("SIGHUP")
            now = time.monotonic()
            if now - last_file_check >= FILE_CHECK_S:
                last_file_check = now
                if self.store.changed_on_disk():
                    self.reload_config("the file changed on disk")
            try:
                await self.reconcile()
            except Exception as exc:  # keep serving; the next tick tries again
                self.logbook.emit("ERROR", f"supervision pass failed: {type(exc).__name__}: {exc}")
            self.wake.clear()
            event_wait = asyncio.create_task(self.events.get(), name="event-wait")
            wake_wait = asyncio.create_task(self.wake.wait(), name="wake-wait")
            done, pending = await asyncio.wait(
                {event_wait, wake_wait}, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if event_wait in done:
                self.events.put_nowait(event_wait.result())

    async def _refresh_caps_loop(self) -> None:
        while True:
            try:
                if await self.caps.refresh(self.base_env(), self.wake.set):
                    names = ", ".join(sorted(self.caps.capa)) or "none"
                    self.logbook.emit("INFO", f"Capabilities updated: {names}")
                    self.wake.set()
            except Exception as exc:
                self.logbook.emit("ERROR", f"capability scan failed: {exc}")
            await asyncio.sleep(CAPA_REFRESH_S)

    # ---- config -------------------------------------------------------------------------------
    def config_changed(self) -> None:
        self.save_config()
        self.apply_settings()
        self.wake.set()

    def save_config(self) -> None:
        try:
            self.store.save()
        except OSError as exc:
            self.logbook.emit("ERROR", f"could not write {self.store.path}: {exc}")

    def reload_config(self, why: str) -> None:
        try:
            self.store.load()
        except ConfigError as exc:
            self.store.mark_seen()
            self.logbook.emit(
                "ERROR", f"Config not reloaded ({why}): {exc}; keeping the running config"
            )
            return
        self.auth.accounts = self.store.data["account"]
        self.apply_settings()
        self.logbook.emit("CONF", f"Config reloaded from {self.store.path} ({why})")
        self.wake.set()

    def replace_config(self, data: dict[str, Any]) -> None:
        self.store.data = normalise(data)
        self.auth.accounts = self.store.data["account"]

    def browse_roots(self) -> list[Path]:
        roots = self.store.data["config"].get("browse_roots")
        if isinstance(roots, list) and roots:
            return [Path(r) for r in roots if isinstance(r, str)]
        return [self.store.path.parent.resolve()]

    def trusted_proxies(self) -> list[str]:
        """``config.trustedproxy``: an array or a space-separated list of addresses/CIDRs."""
        value = self.store.data["config"].get("trustedproxy")
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
        return []

    def prometheus_path(self) -> str:
        value = self.store.data["config"].get("prometheus")
        return value.strip("/") if isinstance(value, str) else ""

    # ---- children -----------------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MIST_CONTROL"] = f"{self.udp_address[0]}:{self.udp_address[1]}"
        env["MIST_CHILD"] = "1"
        env["MIST_DEBUG"] = str(self.logbook.debug)
        return env

    def child_env(self, _spec: Spec) -> dict[str, str]:
        return self.base_env()

    def heartbeat(self, pid: int) -> None:
        self.supervisor.heartbeat(pid, time.monotonic())

    def child_exited(self, child: Child, code: int) -> None:
        if child.spec.kind == "input" and child.spec.stream:
            argv = child.spec.argv
            source = argv[argv.index("-s") + 2] if "-s" in argv[:-2] else ""
            self.monitor.events.input_exited(
                child.spec.stream, source, child.spec.program, child.pid, code
            )
        cleanup = _shm()
        if cleanup is None:
            return
        try:
            if child.spec.kind == "input" and child.spec.stream:
                cleanup.cleanup_stream(child.spec.stream)
            if code != 0:
                cleanup.cleanup_dead()
        except Exception as exc:
            self.logbook.emit(
                "WARN",
                f"shared memory cleanup after {child.spec.program} failed: {exc}",
                child.spec.stream,
            )

    def _cleanup_shm(self, startup: bool = False) -> None:
        cleanup = _shm()
        if cleanup is None:
            return
        try:
            cleanup.cleanup_dead()
            if not startup:
                for stream in list(cleanup.list_streams()):
                    cleanup.cleanup_stream(stream)
        except Exception as exc:
            self.logbook.emit("WARN", f"shared memory cleanup failed: {exc}")

    def protocol_specs(self) -> list[Spec]:
        specs, online = connector_specs(
            self.store.data["config"]["protocols"], self.caps, self.logbook.debug
        )
        self.online = dict(online)
        return specs

    def input_spec(self, stream: str) -> Spec | str:
        streams = self.store.data["streams"]
        override = self.source_overrides.get(stream)
        conf = streams.get(base_name(stream))
        if override and isinstance(conf, dict):
            streams = {**streams, base_name(stream): {**conf, "source": override}}
        return input_spec(streams, self.caps, stream)

    async def reconcile(self) -> None:
        specs = self.protocol_specs()
        for name, conf in self.store.data["streams"].items():
            if isinstance(conf, dict) and conf.get("always_on"):
                spec = self.input_spec(name)
                if isinstance(spec, Spec):
                    specs.append(spec)
        wanted_inputs = {s.stream for s in specs if s.kind == "input"}
        for child in self.supervisor.children.values():
            if child.transient:
                spec = self.input_spec(child.spec.stream)
                child.desired = (
                    isinstance(spec, Spec)
                    and spec.key == child.spec.key
                    and child.spec.stream not in wanted_inputs
                )
        self.supervisor.set_desired(specs)
        await self.supervisor.tick()
        protocols = self.store.data["config"]["protocols"]
        self.monitor.events.watch_outputs(
            {
                key: protocols[index]
                for index, key in self.online.items()
                if isinstance(key, str)
                and key.startswith("out:")
                and index < len(protocols)
                and self.supervisor.running(key)
            }
        )

    async def ensure_input(self, stream: str) -> dict[str, Any]:
        name = sanitize(stream)
        reply: dict[str, Any] = {"stream": name}
        running = self.supervisor.find_input(name)
        if running is None or running.state not in (State.STARTING, State.RUNNING):
            problem = await self._before_input(name)
            if problem:
                return {**reply, "status": "error", "error": problem}
        spec = self.input_spec(name)
        if not isinstance(spec, Spec):
            return {**reply, "status": "error", "error": spec}
        child = self.supervisor.find_input(name)
        if child is not None and child.state in (State.STARTING, State.RUNNING):
            return {**reply, "status": "running"}
        if spec.key in self.supervisor.desired or (
            child is not None and child.state == State.BACKOFF
        ):
            if child is not None:
                child.next_start = 0.0
            await self.supervisor.tick()
        else:
            await self.supervisor.start_transient(spec)
        child = self.supervisor.find_input(name)
        if child is None or child.state not in (State.STARTING, State.RUNNING):
            return {**reply, "status": "error", "error": f"could not start {spec.program}"}
        return {**reply, "status": "started"}

    async def _before_input(self, name: str) -> str:
        """STREAM_SOURCE (a blocking answer replaces the source) and STREAM_LOAD (false:
        do not start). Returns why the input must not start, or ""."""
        source = await self.monitor.events.rewrite("STREAM_SOURCE", [name], base_name(name))
        if source:
            if self.source_overrides.get(name) != source:
                self.logbook.emit("INFO", f"STREAM_SOURCE: source of {name} is {source}", name)
            self.source_overrides[name] = source
        else:
            self.source_overrides.pop(name, None)
        if not await self.monitor.events.allowed("STREAM_LOAD", [name], name):
            return "STREAM_LOAD trigger refused to load the stream"
        return ""

    # ---- views for the API --------------------------------------------------------------------
    def now(self) -> float:
        return time.time()

    def challenge(self, host: str) -> str:
        return challenge_for(host)

    def version_info(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "release": RELEASE,
            "date": time.strftime("%b %d %Y", time.gmtime(self.started)),
            "time": time.strftime("%H:%M:%S", time.gmtime(self.started)),
        }

    def api_endpoint(self) -> str:
        host = self.api_interface()
        return f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{self.port}"

    def protocol_online(self, index: int) -> Any:
        value = self.online.get(index, 0)
        if isinstance(value, str) and value.startswith("out:"):
            if self.supervisor.fatal(value):
                return "Invalid configuration"
            return 1 if self.supervisor.running(value) else 0
        return value

    def config_view(self) -> dict[str, Any]:
        cfg = copy.deepcopy(self.store.data["config"])
        for index, proto in enumerate(cfg.get("protocols", [])):
            if isinstance(proto, dict):
                proto["online"] = self.protocol_online(index)
        cfg["iid"] = self.iid
        cfg["version"] = f"{VERSION} {RELEASE}"
        cfg["time"] = int(time.time())
        cfg.setdefault("serverid", socket.gethostname())
        return cfg

    def stream_state(self, name: str) -> int:
        """MistServer's status byte (0 offline .. 5 shutting down) from the stream's state page."""
        try:
            from shm import layout
            from shm.meta import read_state
            from shm.segment import Segment

            seg = Segment.open(layout.state_name(name), min_size=layout.STATE_SIZE)
        except Exception:
            child = self.supervisor.find_input(name)
            return 2 if child is not None and child.state in (State.STARTING, State.RUNNING) else 0
        try:
            state = int(read_state(seg)[0])
        finally:
            seg.close()
        return state if state in STATUS_NAMES else 0

    def active_names(self) -> list[str]:
        names: set[str] = set()
        cleanup = _shm()
        if cleanup is not None:
            try:
                names.update(cleanup.list_streams())
            except Exception as exc:
                self.logbook.emit("WARN", f"list_streams failed: {exc}")
        for child in self.supervisor.children.values():
            if child.spec.kind == "input" and child.state in (State.STARTING, State.RUNNING):
                names.add(child.spec.stream)
        names.update(self.monitor.current_streams())
        return sorted(names)

    def streams_view(self) -> dict[str, Any]:
        active = set(self.active_names())
        out: dict[str, Any] = {}
        for name, conf in self.store.data["streams"].items():
            entry = copy.deepcopy(conf) if isinstance(conf, dict) else {}
            entry["name"] = name
            state = self.stream_state(name) if name in active else 0
            entry["online"] = 1 if state == 4 else (2 if state in (1, 2, 3) else 0)
            out[name] = entry
        return out

    def _stream_field(self, name: str, field: str) -> Any:
        if field in STAT_FIELDS:
            return self.monitor.stream_field(name, field)
        if field == "tags":
            return self.monitor.stream_tags(name)
        if field == "status":
            return STATUS_NAMES.get(self.stream_state(name), "Offline")
        if field == "pid":
            child = self.supervisor.find_input(name)
            return child.pid if child is not None else None
        if field == "tags":
            conf = self.store.data["streams"].get(base_name(name), {})
            return conf.get("tags", []) if isinstance(conf, dict) else []
        if field == "inputs":
            return 1 if self.supervisor.find_input(name) is not None else 0
        if field in ("viewers", "outputs", "clients", "unspecified", "views", "viewseconds"):
            return 0
        return None

    def active_streams(self, arg: Any) -> Any:
        names = self.active_names()
        if (
            arg is None
            or arg is True
            or arg == {}
            or arg == []
            or not isinstance(arg, (list, dict))
        ):
            return names
        if isinstance(arg, list):
            fields = [f for f in arg if isinstance(f, str)]
            return {n: [self._stream_field(n, f) for f in fields] for n in names}
        fields = [f for f in arg.get("fields", []) if isinstance(f, str)] or ["status"]
        wanted = arg.get("streams")
        if isinstance(wanted, list) and wanted:
            names = [n for n in names if n in wanted]
        if arg.get("longform"):
            return {
                "fields": fields,
                "data": {n: {f: self._stream_field(n, f) for f in fields} for n in names},
            }
        return {
            "fields": fields,
            "data": {n: [self._stream_field(n, f) for f in fields] for n in names},
        }

    def metrics_response(self, as_json: bool) -> web.Response:
        if as_json:
            return web.json_response(prometheus.as_json(self, self.monitor))
        return web.Response(
            text=prometheus.text(self, self.monitor),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def request_shutdown(self) -> None:
        self.events.put_nowait("stop")
