"""``MistOutRTMP``: RTMP listener (1935) and, with ``--stream``, an RTMP push client.

    MistOutRTMP [-p 1935] [-i 0.0.0.0] [--acceptable 0|1|2] [--timeout S]
    MistOutRTMP --stream <s> rtmp://host/app/name      (push-out / restream)

One asyncio process (uvloop) serves every connection; see :mod:`outputs.rtmp`.
SIGTERM ends live feeds, closes the connections and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import click

from common.capabilities import Capabilities, Setting
from common.defaults import RTMP_PORT
from common.errors import CliError
from outputs.http.server import LISTEN_BACKLOG, make_socket, raise_fd_limit
from outputs.rtmp.session import RtmpSession, Server

CAPS = Capabilities(
    name="RTMP",
    friendly="RTMP",
    desc="Real Time Messaging Protocol: publish (rtmp://host/<password>/<stream>), live and "
    "VoD playback, enhanced RTMP (HEVC, AV1, VP9, Opus); pushes to rtmp:// targets.",
    kind="connector",
    port=RTMP_PORT,
    push_urls=["rtmp://*"],
    settings=[
        Setting(
            "acceptable",
            "Allowed connection types: 0 play and publish, 1 play only, 2 publish only",
            "select",
            "0",
            select=("0", "1", "2"),
        ),
        Setting(
            "timeout",
            "Seconds a connection (or a stalled publisher) may stay silent before it is closed",
            "uint",
            10,
        ),
    ],
    methods=[{"handler": "rtmp", "type": "flash/10", "hrn": "RTMP", "priority": 7}],
    extra={
        "url_rel": "/play/$",
        "codecs": [[["H264", "HEVC", "AV1", "VP9"], ["AAC", "MP3", "opus"]]],
    },
)


async def serve(host: str, port: int, acceptable: int, timeout: float, debug: int | None) -> None:
    from common import runtime

    rt = await runtime.start_async("MistOutRTMP", debug=debug)
    runtime.quiet_asyncio_logger()
    server = Server(acceptable=acceptable, timeout=timeout)
    raise_fd_limit()
    sock = make_socket(host, port)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: RtmpSession(server), sock=sock, backlog=LISTEN_BACKLOG
    )  # create_server listens again, with its own default of 100 unless told
    bound = sock.getsockname()
    rt.log.info("listening on %s:%d", bound[0], bound[1])
    print(f"MistOutRTMP listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    try:
        while not rt.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.wait_stopped(), 5.0)
            server.reap()
    finally:
        listener.close()
        await server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), 2.0)
        await rt.close()


async def push_main(stream: str, target: str, debug: int | None) -> int:
    from common import runtime
    from outputs.rtmp.push import push

    rt = await runtime.start_async("MistOutRTMP", stream, debug)
    try:
        task = asyncio.ensure_future(push(stream, target, rt, 20.0))
        stop = asyncio.ensure_future(rt.wait_stopped())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return 0
        return task.result()
    finally:
        await rt.close()


@click.command(name="MistOutRTMP", context_settings={"help_option_names": ["-h", "--help"]})
@CAPS.click_options()
@click.option("-s", "--stream", "stream", default="", help="Push this stream to TARGET.")
@click.argument("target", default="")
def main(
    port: int,
    interface: str,
    debug: int | None,
    acceptable: str,
    timeout: int,
    stream: str,
    target: str,
    **_: Any,
) -> None:
    """Serve RTMP, or push --stream to an rtmp:// TARGET."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    if stream or target:
        if not (stream and target):
            raise click.UsageError("push mode needs both --stream and an rtmp:// TARGET")
        try:
            code = asyncio.run(push_main(stream, target, debug))
        except CliError as exc:
            click.echo(f"MistOutRTMP: {exc}", err=True)
            code = exc.exit_code
        sys.exit(code)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(interface, port, int(acceptable), float(timeout), debug))


if __name__ == "__main__":
    main()
