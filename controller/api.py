"""MistServer's JSON API commands (reference 3.3), shared by the HTTP and UDP transports.

:func:`handle` takes one decoded request object and a :class:`Context` saying who asks,
applies the login handshake, then runs the command keys in MistServer's order and
returns the response object. Every command is wrapped: a bad argument gives an
``error`` member, never an exception out of here.
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.streamname import sanitize
from controller import pushes, stats_api, streamkeys, sysinfo
from controller.config_store import shape_problem

if TYPE_CHECKING:
    from controller.server import Controller

CONFIG_MERGE_KEYS = (
    "debug",
    "protocols",
    "trustedproxy",
    "controller",
    "serverid",
    "triggers",
    "accesslog",
    "prometheus",
    "sessionViewerMode",
    "sessionInputMode",
    "sessionOutputMode",
    "sessionUnspecifiedMode",
    "sessionStreamInfoMode",
    "tknMode",
    "defaultStream",
    "location",
)


@dataclass
class Context:
    host: str  # peer host (challenge input)
    local: bool  # local and not proxied: trusted, may shut down
    authorized: bool = False  # the connection logged in before (updated by handle)
    minimal: bool = False
    udp: bool = False


class ApiError(Exception):
    """A command argument was wrong; becomes the response's ``error``."""


async def handle(ctl: Controller, request: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Run one request; returns the response object."""
    now = time.time()
    response: dict[str, Any] = {}
    if ctx.udp:
        ctx.authorized = True
    else:
        if "logout" in request and not ctx.local:
            ctx.authorized = False
            response["authorize"] = {"status": "CHALL", "challenge": ctl.challenge(ctx.host)}
            response["logout"] = True
            return response
        result = ctl.auth.authorize(request, ctx.host, ctx.authorized, ctx.local, now)
        if result.log:
            ctl.logbook.emit("AUTH", result.log)
        if result.response.get("status") == "ACC_MADE":
            ctl.config_changed()
        if result.response:
            response["authorize"] = result.response
        ctx.authorized = result.authorized
        if not result.authorized:
            return response
    minimal = ctx.minimal or "minimal" in request
    changed = False
    for key, func in COMMANDS:
        if key not in request:
            continue
        try:
            result = func(ctl, request[key], ctx)
            if inspect.isawaitable(result):
                result = await result
            out, did_change = result
        except ApiError as exc:
            response.setdefault("error", str(exc))
            continue
        except Exception as exc:  # a bug must not take the API down
            ctl.logbook.emit("ERROR", f"API command {key} failed: {type(exc).__name__}: {exc}")
            response.setdefault("error", f"{key}: internal error: {exc}")
            continue
        changed |= did_change
        if out is not None:
            response[key] = out
    if changed:
        ctl.config_changed()
    if "streams" in request or "addstream" in request or "deletestream" in request or not minimal:
        response["streams"] = ctl.streams_view()
    if not minimal:
        response["config"] = ctl.config_view()
        response["log"] = ctl.logbook.api_lines()
    elif "log" in request:
        response["log"] = ctl.logbook.api_lines()
    if minimal and any(
        k in request for k in ("config", "addprotocol", "deleteprotocol", "updateprotocol")
    ):
        response["config"] = ctl.config_view()
    response["LTS"] = 1
    return response


# ---- commands: (ctl, argument, ctx) -> (response value or None, config changed?) ---------------

Result = tuple[Any, bool]


def _config_backup(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return ctl.store.snapshot(), False


def _config_reload(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    ctl.reload_config("API request")
    return None, False


def _config_restore(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not isinstance(arg, dict):
        raise ApiError("config_restore needs the whole config object (as from config_backup)")
    restored = copy.deepcopy(arg)
    if not restored.get("account"):
        restored["account"] = ctl.store.data.get("account", {})
    problem = shape_problem(restored)
    if problem:
        raise ApiError(f"config_restore: {problem}")
    ctl.replace_config(restored)
    ctl.logbook.emit("CONF", "Config restored from backup")
    return "OK", True


def _config(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not isinstance(arg, dict):
        return None, False
    cfg = ctl.store.data["config"]
    changed = False
    for key in CONFIG_MERGE_KEYS:
        if key not in arg:
            continue
        value = arg[key]
        if key == "protocols":
            value = _clean_protocols(value if isinstance(value, list) else [value])
        if key in ("controller", "triggers", "location") and not isinstance(value, dict):
            raise ApiError(f"config.{key} must be an object")
        if key == "debug" and not (isinstance(value, int) and 0 <= value <= 10):
            raise ApiError("config.debug must be an integer 0..10")
        cfg[key] = copy.deepcopy(value)
        changed = True
    if changed:
        ctl.logbook.emit("CONF", "Server configuration changed")
    return None, changed


def _check_stream(name: Any, body: Any) -> tuple[str, dict[str, Any]]:
    if (
        not isinstance(name, str)
        or not name
        or sanitize(name) != name
        or "+" in name
        or " " in name
    ):
        raise ApiError(f"Invalid stream name {name!r}: use lowercase a-z, 0-9, '_', '.', '-'")
    if not isinstance(body, dict):
        raise ApiError(f"Stream {name}: the configuration must be an object")
    if not isinstance(body.get("source"), str) or not body["source"]:
        raise ApiError(f"Stream {name}: a source is required")
    out = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("online", "error", "meta")}
    out["name"] = name
    return name, out


async def _stream_triggers(ctl: Controller, new: dict[str, Any], removed: list[str]) -> None:
    """STREAM_ADD / STREAM_CONFIG / STREAM_REMOVE: a false answer drops that change
    from ``new`` (added or changed) or keeps the stream (removed)."""
    streams = ctl.store.data["streams"]
    for name, body in list(new.items()):
        old = streams.get(name)
        if old == body:
            continue
        trigger = "STREAM_CONFIG" if old is not None else "STREAM_ADD"
        if not await ctl.monitor.events.allowed(trigger, [name, json.dumps(body)], name):
            if old is None:
                del new[name]
            else:
                new[name] = old
    for name in removed:
        if name in streams and not await ctl.monitor.events.allowed("STREAM_REMOVE", [name], name):
            new[name] = streams[name]


async def _streams(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not isinstance(arg, dict):
        return None, False
    new = dict(_check_stream(n, b) for n, b in arg.items())
    gone = [n for n in ctl.store.data["streams"] if n not in new]
    await _stream_triggers(ctl, new, gone)
    ctl.store.data["streams"] = new
    ctl.logbook.emit("CONF", f"Streams replaced ({len(new)} configured)")
    return None, True


async def _addstream(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not isinstance(arg, dict) or not arg:
        raise ApiError("addstream needs an object {name: {source: ...}}")
    wanted = dict(_check_stream(n, b) for n, b in arg.items())
    await _stream_triggers(ctl, wanted, [])
    streams = ctl.store.data["streams"]
    checked = list(wanted.items())
    for name, body in checked:
        verb = "updated" if name in streams else "added"
        streams[name] = body
        ctl.logbook.emit("CONF", f"Stream {name} {verb} (source {body['source']})", name)
    return None, True


def _names(arg: Any) -> list[str]:
    if isinstance(arg, str):
        return [arg]
    if isinstance(arg, list):
        return [a for a in arg if isinstance(a, str)]
    if isinstance(arg, dict):
        return list(arg)
    raise ApiError("expected a stream name, a list of names or an object")


async def _deletestream(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    streams = ctl.store.data["streams"]
    changed = False
    for name in _names(arg):
        if name in streams and not await ctl.monitor.events.allowed("STREAM_REMOVE", [name], name):
            continue
        if streams.pop(name, None) is not None:
            ctl.logbook.emit("CONF", f"Stream {name} deleted", name)
            changed = True
    return None, changed


def _clean_protocols(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("connector"), str)
            or not item["connector"]
        ):
            raise ApiError("a protocol must be an object with a 'connector' name")
        out.append({k: copy.deepcopy(v) for k, v in item.items() if k != "online"})
    return out


def _as_list(arg: Any) -> list[Any]:
    return arg if isinstance(arg, list) else [arg]


def _addprotocol(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    new = _clean_protocols(_as_list(arg))
    protocols = ctl.store.data["config"]["protocols"]
    for proto in new:
        protocols.append(proto)
        ctl.logbook.emit("CONF", f"Protocol {proto['connector']} added")
    return None, bool(new)


def _deleteprotocol(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    gone = _clean_protocols(_as_list(arg))
    protocols = ctl.store.data["config"]["protocols"]
    changed = False
    for proto in gone:
        for i, have in enumerate(protocols):
            if {k: v for k, v in have.items() if k != "online"} == proto:
                del protocols[i]
                ctl.logbook.emit("CONF", f"Protocol {proto['connector']} deleted")
                changed = True
                break
    return None, changed


def _updateprotocol(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not (isinstance(arg, list) and len(arg) == 2):
        raise ApiError("updateprotocol needs [old, new]")
    old, new = _clean_protocols(arg)
    protocols = ctl.store.data["config"]["protocols"]
    for i, have in enumerate(protocols):
        if {k: v for k, v in have.items() if k != "online"} == old:
            protocols[i] = new
            ctl.logbook.emit("CONF", f"Protocol {old['connector']} updated")
            return None, True
    raise ApiError("updateprotocol: no such protocol configured")


def _capabilities(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    capa: dict[str, Any] = ctl.caps.by_group()
    capa.update(sysinfo.capability_info())
    return capa, False


def _load(_ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return sysinfo.load(), False


def _browse(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    return sysinfo.browse(ctl.browse_roots(), arg if isinstance(arg, str) else ""), False


def _ui_settings(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if isinstance(arg, dict):
        ctl.store.data["ui_settings"] = copy.deepcopy(arg)
        return arg, True
    return ctl.store.data.get("ui_settings", {}), False


def _version(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return ctl.version_info(), False


def _log(_ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return None, False  # added by handle()


def _clearstatlogs(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    ctl.logbook.clear()
    return None, False


def _active_streams(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    return ctl.active_streams(arg), False


async def _ensure_input(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if not isinstance(arg, str):
        raise ApiError("ensure_input needs a stream name")
    return await ctl.ensure_input(arg), False


def _heartbeat(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if isinstance(arg, dict) and isinstance(arg.get("pid"), int):
        ctl.supervisor.heartbeat(arg["pid"], time.monotonic())
    return None, False


def _api_endpoint(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return ctl.api_endpoint(), False


def _shutdown(ctl: Controller, _arg: Any, ctx: Context) -> Result:
    if not ctx.local and not ctx.udp:
        raise ApiError("shutdown is only accepted from local connections")
    ctl.logbook.emit("CONF", "Shutdown requested through the API")
    ctl.request_shutdown()
    return "Shutting down", False


def _save(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    ctl.save_config()
    return "Saved", False


COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("config_backup", _config_backup),
    ("config_reload", _config_reload),
    ("config_restore", _config_restore),
    ("config", _config),
    ("streams", _streams),
    ("addstream", _addstream),
    ("deletestream", _deletestream),
    ("addprotocol", _addprotocol),
    ("deleteprotocol", _deleteprotocol),
    ("updateprotocol", _updateprotocol),
    ("capabilities", _capabilities),
    ("load", _load),
    ("browse", _browse),
    ("ui_settings", _ui_settings),
    ("version", _version),
    ("log", _log),
    ("clearstatlogs", _clearstatlogs),
    ("active_streams", _active_streams),
    ("ensure_input", _ensure_input),
    ("heartbeat", _heartbeat),
    ("api_endpoint", _api_endpoint),
    ("shutdown", _shutdown),
    ("save", _save),
    *stats_api.COMMANDS,
    *pushes.COMMANDS,
    *streamkeys.COMMANDS,
)
