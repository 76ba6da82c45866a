"""The UDP API (reference 3.5): one JSON object per datagram, the reply goes to the sender.

Requests are treated as local, authorized and ``minimal``. No reply is sent when the
sender's port is the API's own port (loop prevention), nor to pure heartbeats.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from controller import api

if TYPE_CHECKING:
    from controller.server import Controller

MAX_REPLY = 65000


class UdpApi(asyncio.DatagramProtocol):
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.transport: asyncio.DatagramTransport | None = None
        self.own_port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.own_port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = json.loads(data)
        except ValueError as exc:
            self._send({"error": f"Invalid JSON in API request: {exc}", "LTS": 1}, addr)
            return
        if not isinstance(request, dict):
            self._send({"error": "The API request must be a JSON object", "LTS": 1}, addr)
            return
        if set(request) == {"heartbeat"}:  # hot path, no reply
            hb = request["heartbeat"]
            if isinstance(hb, dict) and isinstance(hb.get("pid"), int):
                self.ctl.heartbeat(hb["pid"])
            return
        if self.ctl.monitor.handles(request):  # sessions and triggers: hot path, needs addr
            task = asyncio.create_task(self._monitor(request, addr), name=f"udp-mon-{addr[1]}")
        else:
            task = asyncio.create_task(self._handle(request, addr), name=f"udp-api-{addr[1]}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, request: dict[str, Any], addr: tuple[str, int]) -> None:
        ctx = api.Context(host=addr[0], local=True, authorized=True, minimal=True, udp=True)
        response = await api.handle(self.ctl, request, ctx)
        self._send(response, addr)

    async def _monitor(self, request: dict[str, Any], addr: tuple[str, int]) -> None:
        reply = await self.ctl.monitor.handle_datagram(request, addr)
        if reply is not None:
            self._send(reply, addr)

    def _send(self, obj: dict[str, Any], addr: tuple[str, int]) -> None:
        if self.transport is None or addr[1] == self.own_port:
            return
        data = json.dumps(obj).encode()
        if len(data) > MAX_REPLY:
            data = json.dumps(
                {"error": "reply too large for UDP; use the HTTP API", "LTS": 1}
            ).encode()
        self.transport.sendto(data, addr)
