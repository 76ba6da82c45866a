"""Self-description of a Mist* program (MistServer's ``-j`` capabilities JSON).

Each program declares its settings once, as :class:`Setting` records inside a
:class:`Capabilities`; from that single definition come

* the JSON printed by ``-j/--json`` and collected by the controller
  (``capabilities`` API command; keys as MistServer's: ``name``, ``friendly``, ``desc``,
  ``optional``/``required`` with ``name``, ``help``, ``type``, ``default``, ``option``;
  connectors add ``deps``, ``url_match``, ``url_rel``, ``url_prefix``, ``methods``,
  ``push_urls``, ``port``; inputs add ``source_match`` and ``priority``),
* the click options of the program (:meth:`Capabilities.click_options`),
* and, on the controller side, the argv built from a config entry (:func:`options_to_args`).

Example for an output::

    CAPS = Capabilities(
        name="RTMP", friendly="RTMP", desc="Real time messaging protocol", kind="connector",
        port=1935, push_urls=["rtmp://*"],
        settings=[Setting("acceptable", "0 both, 1 play only, 2 publish only", "uint", 0)],
    )

    @click.command()
    @CAPS.click_options()
    def main(port: int, interface: str, debug: int, acceptable: int) -> None: ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import click

Kind = Literal["connector", "input", "other"]
# MistServer option types. "bool" options are flags: present when true.
SETTING_TYPES = ("str", "uint", "int", "debug", "bool", "json", "select", "inputlist")


@dataclass(frozen=True)
class Setting:
    """One option: a config key, its CLI flag and its documentation."""

    name: str
    help: str
    type: str = "str"
    default: Any = None
    option: str = ""  # the long CLI flag; "--<name>" when empty
    short: str = ""  # optional one-letter flag, e.g. "-p"
    required: bool = False
    select: tuple[Any, ...] = ()  # choices for type "select"
    friendly: str = ""

    def __post_init__(self) -> None:
        if self.type not in SETTING_TYPES:
            raise ValueError(f"setting {self.name!r}: unknown type {self.type!r}")

    @property
    def flag(self) -> str:
        return self.option or f"--{self.name}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.friendly or self.name,
            "help": self.help,
            "option": self.flag,
        }
        if self.type != "bool":
            out["type"] = self.type
        if self.default is not None:
            out["default"] = self.default
        if self.select:
            out["select"] = list(self.select)
        return out

    def click_option(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        decls = [d for d in (self.short, self.flag) if d]
        dest = self.name.replace("-", "_")
        if self.type == "bool":
            return click.option(
                *decls, dest, is_flag=True, default=bool(self.default), help=self.help
            )
        ptype: Any = {
            "uint": click.IntRange(min=0),
            "int": int,
            "debug": click.IntRange(0, 10),
        }.get(self.type, str)
        if self.type == "select" and self.select:
            ptype = click.Choice([str(s) for s in self.select])
        extra: dict[str, Any] = {}
        if self.default is not None:  # click >= 8.2 treats an explicit None as a given value
            extra["default"] = self.default
            extra["show_default"] = True
        return click.option(
            *decls, dest, type=ptype, required=self.required, help=self.help, **extra
        )


DEBUG_SETTING = Setting(
    "debug", "Debug level 0..10 (4 = INFO)", "debug", None, "--debug", "-g", friendly="debug"
)


@dataclass
class Capabilities:
    """The declaration a program makes once; see the module docstring."""

    name: str  # without the MistIn/MistOut prefix: "RTMP", "MP4", "Buffer"
    desc: str
    kind: Kind = "other"
    friendly: str = ""
    settings: list[Setting] = field(default_factory=list)
    # connectors
    port: int | None = None  # default listening port; None for HTTP-dispatched handlers
    deps: str | None = None  # "HTTP" when served through MistOutHTTP
    url_match: list[str] = field(default_factory=list)
    url_rel: str | None = None
    url_prefix: str | None = None
    methods: list[dict[str, Any]] = field(default_factory=list)
    push_urls: list[str] = field(default_factory=list)
    # inputs
    source_match: list[str] = field(default_factory=list)
    priority: int = 9
    extra: dict[str, Any] = field(default_factory=dict)  # any other capa keys

    def all_settings(self) -> list[Setting]:
        """The declared settings plus the common ones every program of this kind has."""
        common: list[Setting] = []
        names = {s.name for s in self.settings}
        if self.kind == "connector" and self.port is not None:
            if "port" not in names:
                common.append(
                    Setting("port", "TCP port to listen on", "uint", self.port, "--port", "-p")
                )
            if "interface" not in names:
                common.append(
                    Setting(
                        "interface",
                        "Interface address to listen on",
                        "str",
                        "0.0.0.0",
                        "--interface",
                        "-i",
                    )
                )
        if "debug" not in names:
            common.append(DEBUG_SETTING)
        return [*common, *self.settings]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "friendly": self.friendly or self.name,
            "desc": self.desc,
        }
        required = {s.name: s.to_json() for s in self.all_settings() if s.required}
        optional = {s.name: s.to_json() for s in self.all_settings() if not s.required}
        if required:
            out["required"] = required
        out["optional"] = optional
        if self.kind == "connector":
            if self.port is not None:
                out["port"] = self.port
            for key in ("deps", "url_rel", "url_prefix"):
                if getattr(self, key) is not None:
                    out[key] = getattr(self, key)
            for key in ("url_match", "methods", "push_urls"):
                if getattr(self, key):
                    out[key] = getattr(self, key)
        if self.kind == "input":
            out["source_match"] = list(self.source_match)
            out["priority"] = self.priority
        out.update(self.extra)
        return out

    def click_options(
        self, json_flag: bool = True
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator adding every setting as a click option, plus ``-j/--json``."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            for setting in reversed(self.all_settings()):
                func = setting.click_option()(func)
            if json_flag:
                func = print_capabilities_and_exit(self)(func)
            return func

        return decorate


def print_capabilities_and_exit(
    caps: Capabilities,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click ``-j/--json`` flag that prints ``caps`` as JSON and exits 0 (eager)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(json.dumps(caps.to_json()))
            ctx.exit(0)

    return click.option(
        "-j",
        "--json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=callback,
        help="Print this program's capabilities as JSON and exit.",
    )


# ---- controller side: config entry -> argv ---------------------------------------------------


def _option_specs(capa: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for group in ("required", "optional"):
        specs = capa.get(group)
        if isinstance(specs, dict):
            yield from ((k, v) for k, v in specs.items() if isinstance(v, dict))


def options_to_args(
    capa: dict[str, Any], values: dict[str, Any], skip: Iterable[str] = ()
) -> list[str]:
    """CLI arguments for ``values`` (a protocol or stream config) per the capa ``option`` flags.

    Keys without a declared option are ignored (MistServer's ``optionsToArguments``);
    flags without a ``type`` are booleans, passed bare when the value is true.
    """
    skipped = set(skip)
    args: list[str] = []
    for name, spec in _option_specs(capa):
        if name in skipped or name not in values or not spec.get("option"):
            continue
        value = values[name]
        if value is None or value == "":
            continue
        if "type" not in spec or spec.get("type") == "bool":
            if value:
                args.append(spec["option"])
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = int(value)
        args += [spec["option"], str(value)]
    return args


def missing_required(capa: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Names of ``required`` options absent from ``values``."""
    req = capa.get("required")
    if not isinstance(req, dict):
        return []
    return [name for name in req if values.get(name) in (None, "")]
