"""``MistController``: command line (reference 2.1), then the asyncio loop.

Exit codes: 0 after a clean shutdown, 1 when the config file is unusable (the message
names the file and the position) or the API port cannot be bound, 2 for bad flags.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from common.errors import CliError
from controller.config_store import DEFAULT_FILE
from controller.server import Controller, Options
from controller.version import RELEASE, VERSION


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_FILE,
    show_default=True,
    help="Config file (JSON); created with defaults when missing.",
)
@click.option(
    "-p", "--port", type=click.IntRange(1, 65535), help="API port (default: config, else 4242)."
)
@click.option("-i", "--interface", help="API listen address (default: config, else 0.0.0.0).")
@click.option(
    "-a", "--account", metavar="USER:PASS", help="Create or update an API account at boot."
)
@click.option(
    "-L",
    "--logfile",
    type=click.Path(dir_okay=False),
    help="Append log lines to this file instead of stderr.",
)
@click.option("-A", "--accesslog", help="Access log: LOG (to the log), empty (off) or a file name.")
@click.option(
    "-S", "--prometheus", metavar="PATH", help="Serve Prometheus metrics on the API port at /PATH."
)
@click.option(
    "-g", "--debug", type=click.IntRange(0, 10), help="Debug level 0..10 (default: config, else 4)."
)
@click.version_option(f"{VERSION} {RELEASE}", "-v", "--version", prog_name="MistController")
def command(
    config: Path,
    port: int | None,
    interface: str | None,
    account: str | None,
    logfile: str | None,
    accesslog: str | None,
    prometheus: str | None,
    debug: int | None,
) -> None:
    """MistController: configuration, API and process supervision for mistpy."""
    opts = Options(
        config=config.absolute(),
        port=port,
        interface=interface,
        debug=debug,
        account=account,
        logfile=logfile,
        accesslog=accesslog,
        prometheus=prometheus,
    )
    try:
        code = _run(opts)
    except CliError as exc:
        click.echo(f"MistController: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code)


def _run(opts: Options) -> int:
    async def go() -> int:
        ctl = Controller(opts)
        ctl.prepare()
        return await ctl.run()

    try:
        import uvloop

        return uvloop.run(go())
    except ImportError:
        return asyncio.run(go())


def main() -> None:
    command()
