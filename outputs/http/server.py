"""``MistOutHTTP``: the HTTP front door (port 8080) for progressive media, info and player.

One asyncio process (uvloop when available) serves thousands of connections; run N of
them on the same port to use N cores (the listening socket has ``SO_REUSEPORT``).
SIGTERM stops accepting, ends live feeds and closes connections, then exits.

Module map of :mod:`outputs.http`:

* ``parser``   -- sans-IO HTTP/1.x request parser with limits (400/408/413/431/501)
* ``protocol`` -- asyncio protocol per connection: timers, keep-alive, flow control
* ``message``  -- Request/Response records (shared with plug-in outputs), CORS headers
* ``routes``   -- path -> route record (pure)
* ``app``      -- the handler: routes to info, player, live fan-out or VoD
* ``info``     -- ``/json_<s>.js`` / ``/info_<s>.js`` bodies
* ``vod``      -- per-viewer downloads, progressive MP4 with Range
* ``player.html`` -- the ``/<s>.html`` page
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import sys
from typing import Any

import click

from common.capabilities import Capabilities, Setting
from common.defaults import HTTP_PORT
from outputs.formats import load_plugins
from outputs.http.app import HttpApp
from outputs.http.protocol import HttpConnection

LISTEN_BACKLOG = 4096

log = logging.getLogger("MistOutHTTP")

CAPS = Capabilities(
    name="HTTP",
    friendly="HTTP",
    desc="HTTP connection handler: progressive media (FLV, TS, MP4, MKV/WebM, OGG, WAV, MP3, AAC), "
    "stream info (json_/info_), player page, and the HTTP-based outputs that plug into it.",
    kind="connector",
    port=HTTP_PORT,
    settings=[
        Setting(
            "idle_timeout", "Close idle keep-alive connections after this many seconds", "uint", 60
        ),
        Setting("header_timeout", "Seconds a client may take to send a request header", "uint", 10),
        Setting(
            "max_buffer",
            "KiB queued for a viewer before it is treated as slow (live: skips to the next keyframe)",
            "uint",
            512,
        ),
        Setting(
            "pubaddr",
            "Public base URL of this server (e.g. https://cdn.example.com), used in generated URLs",
            "str",
            "",
        ),
    ],
    extra={"provides": "HTTP"},  # HTTP-dependent outputs declare "deps": "HTTP"
)


def raise_fd_limit() -> None:
    """Soft open-files limit up to the hard one: one descriptor per viewer, and thousands
    of viewers pass the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def make_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A listening TCP socket; ``SO_REUSEPORT`` lets several processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    # A burst of viewers connects faster than one busy event loop accepts: a short accept
    # queue overflows, and the dropped handshakes end up as resets seconds later. The
    # kernel caps this at net.core.somaxconn.
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def serve(
    host: str,
    port: int,
    *,
    idle_timeout: float = 60.0,
    header_timeout: float = 10.0,
    max_buffer: int = 512 * 1024,
    debug: int | None = None,
    pubaddr: str = "",
) -> None:
    from common import runtime

    rt = await runtime.start_async("MistOutHTTP", debug=debug)
    load_plugins()
    raise_fd_limit()
    app = HttpApp(public_url=pubaddr)
    conns: set[HttpConnection] = set()
    sock = make_socket(host, port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpConnection(
            app,
            idle_timeout=idle_timeout,
            header_timeout=header_timeout,
            max_buffer=max_buffer,
            registry=conns,
        ),
        sock=sock,
        backlog=LISTEN_BACKLOG,  # create_server listens again: its default is 100
    )
    bound = sock.getsockname()
    rt.log.info("listening on %s:%d", bound[0], bound[1])
    print(f"MistOutHTTP listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    try:
        await rt.wait_stopped()
    finally:
        server.close()
        await app.hub.close()
        for conn in list(conns):
            conn.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        await rt.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@CAPS.click_options()
def main(
    port: int,
    interface: str,
    debug: int | None,
    idle_timeout: int,
    header_timeout: int,
    max_buffer: int,
    pubaddr: str,
    **_: Any,
) -> None:
    """Serve progressive HTTP media, stream info and the player page."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                interface,
                port,
                idle_timeout=float(idle_timeout),
                header_timeout=float(header_timeout),
                max_buffer=max_buffer * 1024,
                debug=debug,
                pubaddr=pubaddr,
            )
        )


if __name__ == "__main__":
    main()
