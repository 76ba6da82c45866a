"""What should run, derived from the config and the capabilities (no I/O).

:func:`connector_specs` turns ``config.protocols[]`` into connector processes
(``MistOut<X> -p <port> -i <iface> -g <debug> [--opt value ...]``) plus the ``online``
value of entries that are not spawned; :func:`input_spec` builds the input process of
a stream (``MistIn<X> -s <stream> <source> [--opt value ...]``). A spec's key is its
identity: any change of program or argv gives a new key, so the supervisor replaces
the process.
"""

from __future__ import annotations

import json
from typing import Any

from common.capabilities import missing_required, options_to_args
from common.streamname import base_name
from controller.inputs import choose_input
from controller.programs import CapabilityCache
from controller.supervisor import Spec


def connector_specs(
    protocols: list[Any], caps: CapabilityCache, debug: int
) -> tuple[list[Spec], dict[int, str]]:
    """Specs to run, and per protocol index either a spec key or a reason string."""
    specs: list[Spec] = []
    online: dict[int, str] = {}
    for index, proto in enumerate(protocols):
        name = proto.get("connector") if isinstance(proto, dict) else None
        if not isinstance(proto, dict) or not isinstance(name, str) or not name:
            online[index] = "Missing connector name"
            continue
        found = caps.connector(name)
        if found is None:
            online[index] = "Not installed"
            continue
        prog, capa = found
        if capa.get("deps") or capa.get("socket"):
            online[index] = "Enabled"  # served through MistOutHTTP
            continue
        if "PUSHONLY" in str(capa.get("flags", "")):
            online[index] = "Push-only"
            continue
        if missing_required(capa, proto):
            online[index] = "Invalid configuration"
            continue
        port = proto.get("port") or capa.get("port") or 0
        iface = proto.get("interface") or "0.0.0.0"
        args: tuple[str, ...] = ("-p", str(port), "-i", str(iface), "-g", str(debug))
        args += tuple(options_to_args(capa, proto, skip=("port", "interface", "debug")))
        key = "out:" + json.dumps([name, args])
        specs.append(Spec(key, "output", prog.name, (*prog.argv, *args)))
        online[index] = key
    return specs, online


def substitute(source: str, stream: str) -> str:
    """MistServer's stream variables in a source, and folder sources of wildcard streams."""
    base = base_name(stream)
    wildcard = stream[len(base) + 1 :] if len(stream) > len(base) else ""
    out = (
        source.replace("$stream", stream)
        .replace("$basename", base)
        .replace("$pluswildcard", f"+{wildcard}" if wildcard else "")
        .replace("$wildcard", wildcard)
    )
    if wildcard and out.endswith("/"):
        out += wildcard
    return out


def input_spec(streams: dict[str, Any], caps: CapabilityCache, stream: str) -> Spec | str:
    """The input process for ``stream`` (already sanitized), or why there is none."""
    conf = streams.get(base_name(stream))
    if not isinstance(conf, dict) or not isinstance(conf.get("source"), str):
        return f"stream {stream!r} is not configured"
    source = substitute(conf["source"], stream)
    choice = choose_input(caps.by_group().get("inputs", {}), source)
    if choice is None:
        return f"no installed input can read {source!r}"
    found = caps.input(choice.name)
    if found is None:
        return f"input {choice.name} vanished"
    prog, capa = found
    args = ("-s", stream, choice.source, *options_to_args(capa, conf, skip=("source",)))
    return Spec("in:" + json.dumps([stream, args]), "input", prog.name, (*prog.argv, *args), stream)
