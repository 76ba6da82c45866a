"""The HTTP transport of the API (reference 3.1), on aiohttp.

Any URL answers. The request JSON comes from the body when the content type is
``application/json``, else from the ``command`` GET/POST variable. Without (valid)
JSON, ``/api`` and ``/api2`` answer with a JSON error and every other URL serves the
web page. ``/api2`` implies ``minimal``; ``callback``/``jsonp`` wraps the answer as
JSONP. Responses are ``text/javascript`` with CORS headers. A connection that logged
in stays authorized for its keep-alive lifetime (tracked per transport).
"""

from __future__ import annotations

import ipaddress
import json
import re
import weakref
from importlib import resources
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from controller import api

if TYPE_CHECKING:
    from controller.server import Controller

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Credentials": "true",
}
_CALLBACK = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]{0,127}$")
MAX_BODY = 4 * 1024 * 1024


def _local_addresses() -> set[str]:
    addrs = {"127.0.0.1", "::1"}
    try:
        for entries in psutil.net_if_addrs().values():
            for entry in entries:
                addrs.add(entry.address.split("%")[0])
    except OSError:
        pass
    return addrs


def _normal_host(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _in_networks(host: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


class HttpApi:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.authorized: weakref.WeakSet[Any] = weakref.WeakSet()
        self.local_addresses = _local_addresses()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)

    def is_local(self, request: web.Request) -> bool:
        if "X-Forwarded-For" in request.headers or "X-Real-IP" in request.headers:
            return False
        host = _normal_host(request.remote or "")
        try:
            if ipaddress.ip_address(host).is_loopback:
                return True
        except ValueError:
            return False
        return host in self.local_addresses

    def client_host(self, request: web.Request) -> str:
        """The peer host, or the forwarded client's when the peer is a trusted proxy."""
        peer = _normal_host(request.remote or "")
        forwarded = (
            request.headers.get("X-Real-IP")
            or request.headers.get("X-Forwarded-For", "").split(",")[-1]
        )
        if forwarded.strip() and _in_networks(peer, self.ctl.trusted_proxies()):
            return _normal_host(forwarded.strip())
        return peer

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=CORS)
        path = request.path
        if path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            from controller.ws_api import handle_ws

            return await handle_ws(self, request, self.client_host(request), self.is_local(request))
        prom = self.ctl.prometheus_path()
        if prom and path in (f"/{prom}", f"/{prom}.json"):
            return self.ctl.metrics_response(path.endswith(".json"))
        params: dict[str, str] = dict(request.query)
        raw: str | None = None
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                raw = (await request.read()).decode("utf-8", "replace")
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        if raw is None:
            raw = params.get("command")
        is_api = path in ("/api", "/api2")
        request_obj: Any = None
        error = ""
        if raw is not None and raw.strip():
            try:
                request_obj = json.loads(raw)
            except ValueError as exc:
                error = f"Invalid JSON in API request: {exc}"
            else:
                if not isinstance(request_obj, dict):
                    error = (
                        f"The API request must be a JSON object, not {type(request_obj).__name__}"
                    )
                    request_obj = None
        elif is_api:
            request_obj = {}
        if request_obj is None and not is_api:
            if error:
                return self._reply({"error": error, "LTS": 1}, params)
            return web.Response(text=self.ui_page(), content_type="text/html", headers=CORS)
        if request_obj is None:
            return self._reply({"error": error, "LTS": 1}, params)
        transport = request.transport
        ctx = api.Context(
            host=self.client_host(request),
            local=self.is_local(request),
            authorized=transport is not None and transport in self.authorized,
            minimal=path == "/api2",
        )
        header = request.headers.get("Authorization", "")
        if header[:5].lower() == "json " and not ctx.local:
            denied = self._header_auth(header[5:], ctx)
            if denied is not None:
                return denied
        response = await api.handle(self.ctl, request_obj, ctx)
        if transport is not None:
            if ctx.authorized and not ctx.local:
                self.authorized.add(transport)
            else:
                self.authorized.discard(transport)
        return self._reply(response, params)

    def _header_auth(self, text: str, ctx: api.Context) -> web.Response | None:
        """The ``Authorization: json {...}`` form: 403 + challenge on failure."""
        chall = self.ctl.challenge(ctx.host)
        try:
            creds = json.loads(text)
        except ValueError:
            creds = None
        ok = (
            isinstance(creds, dict)
            and isinstance(creds.get("username"), str)
            and isinstance(creds.get("password"), str)
            and self.ctl.auth.limiter.blocked(ctx.host, self.ctl.now()) == 0
            and self.ctl.auth.check_credentials(
                creds["username"], creds["password"], ctx.host, self.ctl.now()
            )
        )
        if ok:
            ctx.authorized = True
            return None
        self.ctl.auth.limiter.failed(ctx.host, self.ctl.now())
        self.ctl.logbook.emit("AUTH", f"Failed header login from {ctx.host}")
        headers = dict(CORS)
        headers["WWW-Authenticate"] = "json " + json.dumps({"challenge": chall})
        return web.Response(status=403, text="403 Forbidden\n", headers=headers)

    def _reply(self, obj: dict[str, Any], params: dict[str, str]) -> web.Response:
        body = json.dumps(obj)
        callback = params.get("callback") or params.get("jsonp")
        if callback and _CALLBACK.match(callback):
            body = f"{callback}({body});"
        return web.Response(text=body + "\n\n", content_type="text/javascript", headers=CORS)

    def ui_page(self) -> str:
        try:
            return resources.files("controller").joinpath("ui.html").read_text(encoding="utf-8")
        except OSError:
            return "<!doctype html><title>mistpy</title><p>mistpy controller: use /api</p>"
