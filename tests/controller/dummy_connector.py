"""A tiny real connector for the controller tests: ``MistOutDummy``.

Listens on ``-p``, greets each TCP client with ``--greeting`` and a newline, logs
through ``common.log`` and heartbeats through ``common.runtime``. ``--stall`` blocks
its event loop after the first second (heartbeats stop) so stall detection can be
tested. Run as ``MistInDummy`` (argv[0] or ``--as-input``) it acts as an input:
``-s <stream> <source>``, it logs one line for the stream and runs until stopped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import click

from common import runtime
from common.capabilities import Capabilities, Setting

CONNECTOR = Capabilities(
    name="Dummy",
    desc="Test connector: greets TCP clients",
    kind="connector",
    port=4999,
    settings=[
        Setting("greeting", "Line sent to every client", "str", "hello"),
        Setting("stall", "Block the event loop after one second", "bool", False),
    ],
)
INPUT = Capabilities(
    name="Dummy",
    desc="Test input for dummy:// sources",
    kind="input",
    source_match=["dummy://*"],
    priority=9,
    settings=[
        Setting("idle_exit", "Exit 0 after this many seconds (0 = never)", "uint", 0),
        Setting("shm", "Publish the stream on the shared-memory bus", "bool", False),
    ],
)


async def serve_connector(
    port: int, interface: str, greeting: str, stall: bool, debug: int | None
) -> None:
    rt = await runtime.start_async("MistOutDummy", debug=debug)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rt.log.warning("client connected from %s", writer.get_extra_info("peername")[0])
        writer.write(greeting.encode() + b" " + str(os.getpid()).encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, interface, port, reuse_address=True)
    rt.log.info("listening on %s:%d", interface, port)
    if stall:
        await asyncio.sleep(1.0)
        rt.log.warning("stalling on purpose")
        time.sleep(3600)
    await rt.wait_stopped()
    server.close()
    await server.wait_closed()
    rt.log.info("stopped: %s", rt.exit_reason)
    await rt.close()


async def run_input(stream: str, source: str, idle_exit: int, shm: bool) -> None:
    rt = await runtime.start_async("MistInDummy", stream=stream)
    rt.log.info("reading %s", source)
    writer = None
    if shm:
        from shm import StreamWriter
        from shm.model import StreamState, TrackMeta

        writer = StreamWriter(stream, source=source)
        track = writer.add_track(TrackMeta(id=1, type="meta", codec="JSON"))
        for i in range(5):
            writer.append(track, i * 100, 0, True, b'{"n": %d}' % i)
        writer.set_state(StreamState.READY)
    try:
        await asyncio.wait_for(rt.wait_stopped(), idle_exit or None)
    except TimeoutError:
        rt.log.info("idle; exiting")
    if writer is not None:
        writer.close()
    await rt.close()


@click.command()
@CONNECTOR.click_options()
def connector_main(
    port: int, interface: str, debug: int | None, greeting: str, stall: bool
) -> None:
    asyncio.run(serve_connector(port, interface, greeting, stall, debug))


@click.command()
@INPUT.click_options()
@click.option("-s", "--stream", required=True)
@click.argument("source")
def input_main(debug: int | None, idle_exit: int, shm: bool, stream: str, source: str) -> None:
    asyncio.run(run_input(stream, source, idle_exit, shm))


if __name__ == "__main__":
    if (
        os.path.basename(sys.argv[0]).startswith("MistIn")
        or os.environ.get("DUMMY_ROLE") == "input"
    ):
        input_main()
    else:
        connector_main()
