"""The command line every VoD file input shares.

``MistIn<X> -s <stream> <source> [--pagetimeout S] [--inputtimeout S] [--always_on]
[--cache_dir DIR] [-g N]``, and ``-j`` for the capabilities JSON the controller uses
to pick an input (``source_match``/``priority``). The options are declared once in
:func:`vod_settings` and reach both the JSON and the click options from there.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from common import runtime
from common.capabilities import Capabilities, Setting
from common.defaults import INPUT_TIMEOUT_S, PAGE_TIMEOUT_S
from common.streamname import sanitize
from inputs.base import EXIT_INVALID, Options, VodFormat, VodInput


def vod_settings() -> list[Setting]:
    return [
        Setting(
            "pagetimeout",
            "Seconds an unused data page stays loaded",
            "uint",
            PAGE_TIMEOUT_S,
            friendly="Page timeout",
        ),
        Setting(
            "inputtimeout",
            "Seconds without viewers before the input exits",
            "uint",
            INPUT_TIMEOUT_S,
            friendly="Input timeout",
        ),
        Setting("always_on", "Keep running without viewers", "bool", friendly="Always on"),
        Setting(
            "cache_dir",
            "Where index headers go when the source's directory is not writable",
            "str",
            friendly="Header cache directory",
        ),
    ]


def vod_capabilities(
    name: str, desc: str, source_match: list[str], priority: int = 9
) -> Capabilities:
    return Capabilities(
        name=name,
        desc=desc,
        kind="input",
        settings=vod_settings(),
        source_match=source_match,
        priority=priority,
    )


def make_main(caps: Capabilities, fmt: Callable[[], VodFormat]) -> click.Command:
    """The click command of ``MistIn<caps.name>``."""
    program = f"MistIn{caps.name}"

    @click.command(name=program, help=f"{caps.desc}.")
    @click.option("-s", "--stream", required=True, help="Stream name to publish on the bus.")
    @click.argument("source")
    @caps.click_options()
    @click.pass_context
    def main(
        ctx: click.Context,
        stream: str,
        source: str,
        debug: int | None,
        pagetimeout: int,
        inputtimeout: int,
        always_on: bool,
        cache_dir: str | None,
    ) -> None:
        name = sanitize(stream)
        if not name:
            raise click.BadParameter(f"no valid stream name in {stream!r}", param_hint="-s")
        rt = runtime.start(program, name, debug)
        opts = Options(float(pagetimeout), float(inputtimeout), always_on, cache_dir)
        try:
            code = VodInput(fmt(), name, source, rt, opts).run()
        except Exception as exc:  # last line of defence: one clear line, no traceback
            rt.log.debug("unexpected failure", exc_info=True)
            rt.log.error("input failed: %s: %s", type(exc).__name__, exc)
            code = EXIT_INVALID
        finally:
            rt.close_sync()
        ctx.exit(code)

    return main
