"""JWKS URLs in the ``jwks`` list: keys fetched from an identity provider (MistServer's
``jwkUriCheck``, a controller task every second).

An entry ``"https://idp/.well-known/jwks.json"`` or ``[url, perms]`` names a JSON Web Key
Set (RFC 7517 section 5: ``{"keys": [jwk, ...]}``); its keys carry the entry's
permissions. The set is fetched when the URL first appears, again when the answer's
``Cache-Control: max-age`` runs out (bounded to ``MIN_REFRESH_S`` .. ``MAX_REFRESH_S``,
``DEFAULT_REFRESH_S`` without one) so a provider's key rotation is picked up, and after
``RETRY_S`` when a fetch fails. A failed fetch keeps the keys of the last good one: an
identity provider that is down for a minute must not lock every viewer out.

The parsing is sans-IO (:func:`parse_document`, :func:`refresh_after`); :class:`JwksUrls`
only schedules the fetches.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller import jwt

DEFAULT_REFRESH_S = 300.0
MIN_REFRESH_S = 1.0
MAX_REFRESH_S = 86_400.0
RETRY_S = 10.0
FETCH_TIMEOUT_S = 10.0
MAX_DOCUMENT = 1 << 20  # a key set is a few KiB; refuse to buffer a runaway answer
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def url_entry(entry: Any) -> tuple[str, dict[str, Any]] | None:
    """``(url, perms)`` for a URL entry of the ``jwks`` list, else None."""
    perms: Any = {}
    if isinstance(entry, list) and entry:
        entry, perms = entry[0], entry[1] if len(entry) > 1 else {}
    if isinstance(entry, str) and entry.startswith(("http://", "https://")):
        return entry, perms if isinstance(perms, dict) else {}
    return None


def parse_document(body: bytes, perms: dict[str, Any]) -> list[jwt.Key]:
    """The usable keys of a JWKS document (a bare JWK is taken too); ValueError when it is
    not JSON or holds no usable key."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    found = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(found, list):
        raise ValueError('"keys" is not a list')
    keys = [k for k in (jwt.Key.from_entry([item, perms]) for item in found) if k is not None]
    if not keys:
        raise ValueError("no usable key (kty oct, RSA or EC) in the set")
    return keys


def refresh_after(cache_control: str | None) -> float:
    """Seconds until the set is fetched again, from the answer's Cache-Control."""
    if cache_control:
        if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
            return MIN_REFRESH_S
        found = _MAX_AGE.search(cache_control)
        if found:
            return min(max(float(found.group(1)), MIN_REFRESH_S), MAX_REFRESH_S)
    return DEFAULT_REFRESH_S


@dataclass
class _Source:
    perms: dict[str, Any]
    keys: list[jwt.Key] = field(default_factory=list)
    due: float = 0.0  # monotonic time of the next fetch
    task: asyncio.Task[None] | None = None
    error: str = ""


class JwksUrls:
    """Keeps the keys of every configured JWKS URL fresh."""

    def __init__(self, entries: Callable[[], Any], log: Callable[[str, str], None]) -> None:
        self._entries = entries  # -> the top-level "jwks" list
        self._log = log
        self._sources: dict[str, _Source] = {}
        self._session: Any = None  # aiohttp.ClientSession, made on the first fetch

    def keys(self) -> list[jwt.Key]:
        """The keys fetched for the URLs configured now."""
        return [k for src in self._sources.values() for k in src.keys]

    def check(self, now: float | None = None) -> None:
        """Start the fetches that are due (call once a second from the event loop)."""
        mono = time.monotonic() if now is None else now
        entries = self._entries()
        wanted = dict(
            found
            for found in (url_entry(e) for e in (entries if isinstance(entries, list) else []))
            if found is not None
        )
        for url in [u for u in self._sources if u not in wanted]:
            src = self._sources.pop(url)
            if src.task is not None:
                src.task.cancel()
        for url, perms in wanted.items():
            known = self._sources.get(url)
            if known is not None and known.perms == perms:
                src = known
            else:  # new, or its permissions changed: the keys are taken again
                if known is not None and known.task is not None:
                    known.task.cancel()
                src = self._sources[url] = _Source(perms)
            if src.task is None and mono >= src.due:
                src.task = asyncio.get_running_loop().create_task(
                    self._fetch(url, src), name="jwks-fetch"
                )

    async def _fetch(self, url: str, src: _Source) -> None:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            async with self._session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise ValueError(f"answered HTTP {resp.status}")
                body = await resp.content.read(MAX_DOCUMENT + 1)
                if len(body) > MAX_DOCUMENT:
                    raise ValueError(f"the set is larger than {MAX_DOCUMENT} bytes")
                keys = parse_document(body, src.perms)
                wait = refresh_after(resp.headers.get("Cache-Control"))
        except (ValueError, TimeoutError, aiohttp.ClientError) as exc:
            src.error = str(exc) or type(exc).__name__
            src.due = time.monotonic() + RETRY_S
            kept = f"; keeping its {len(src.keys)} earlier keys" if src.keys else ""
            self._log("WARN", f"JWKS {url}: {src.error}{kept}")
        else:
            if [k.jwk for k in keys] != [k.jwk for k in src.keys]:
                self._log("INFO", f"JWKS {url}: {len(keys)} keys")
            src.keys, src.error = keys, ""
            src.due = time.monotonic() + wait
        finally:
            src.task = None

    async def close(self) -> None:
        for src in self._sources.values():
            if src.task is not None:
                src.task.cancel()
        if self._session is not None:
            await self._session.close()
