"""API commands for statistics, sessions and triggers (reference 3.3), appended to
``controller.api.COMMANDS``. Each takes ``(ctl, argument, ctx)`` and returns
``(response value or None, config changed?)`` like the other commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller import jwks_urls, jwt
from controller.stats import STAT_FIELDS, Monitor

if TYPE_CHECKING:
    from controller.api import Context
    from controller.server import Controller

Result = tuple[Any, bool]


def _mon(ctl: Controller) -> Monitor:
    monitor: Monitor = getattr(ctl, "monitor")  # noqa: B009 - set by Controller.__init__
    return monitor


def _trigger_stat(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    """``{name, ms, ok}`` from a child that ran a handler itself."""
    if isinstance(arg, dict) and isinstance(arg.get("name"), str):
        ms = arg.get("ms")
        _mon(ctl).triggers.record(
            arg["name"], int(ms) if isinstance(ms, (int, float)) else 0, bool(arg.get("ok", True))
        )
    return None, False


def _trigger_fail(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    name = arg.get("name") if isinstance(arg, dict) else arg
    if isinstance(name, str):
        _mon(ctl).triggers.record(name, 0, False)
    return None, False


def _trigger_stats(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return _mon(ctl).triggers.stats_view(), False


def _stats_timing(ctl: Controller, _arg: Any, _ctx: Context) -> Result:
    return _mon(ctl).timing(), False


def _clients(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    return _mon(ctl).clients(arg), False


def _totals(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    return _mon(ctl).totals(arg), False


def stream_field(
    ctl: Controller, name: str, field: str, by_stream: dict[str, dict[str, int]] | None = None
) -> Any:
    if field in STAT_FIELDS:
        return _mon(ctl).stream_field(name, field, by_stream)
    if field == "tags":
        return _mon(ctl).stream_tags(name)
    return ctl._stream_field(name, field)


def streams_table(ctl: Controller, names: list[str], arg: Any) -> Any:
    """``active_streams``/``stats_streams``' three request forms over ``names``."""
    if arg is None or arg is True or arg == {} or arg == [] or not isinstance(arg, (list, dict)):
        return names
    by = _mon(ctl).counts_by_stream()  # one pass over the sessions for every stream
    if isinstance(arg, list):
        fields = [f for f in arg if isinstance(f, str)]
        return {n: [stream_field(ctl, n, f, by) for f in fields] for n in names}
    fields = [f for f in arg.get("fields", []) if isinstance(f, str)] or ["status"]
    wanted = arg.get("streams")
    if isinstance(wanted, list) and wanted:
        names = [n for n in names if n in wanted]
    if arg.get("longform"):
        rows: Any = {n: {f: stream_field(ctl, n, f, by) for f in fields} for n in names}
    else:
        rows = {n: [stream_field(ctl, n, f, by) for f in fields] for n in names}
    return {"fields": fields, "data": rows}


def _stats_streams(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    return streams_table(ctl, _mon(ctl).stats_names(), arg), False


async def _invalidate_sessions(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    kicked = await _mon(ctl).sessions.invalidate(arg)
    ctl.logbook.emit("INFO", f"Sessions invalidated ({kicked} connections now denied)")
    return None, False


def _stop_sessions(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    _mon(ctl).sessions.stop_streams(arg)
    return None, False


def _stop_sessid(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    _mon(ctl).sessions.stop_sessids(arg)
    return None, False


def _stop_tag(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    _mon(ctl).sessions.stop_tags(arg)
    return None, False


def _tag_sessid(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    _mon(ctl).sessions.tag_sessids(arg)
    return None, False


def _tags_arg(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _tag_stream(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if isinstance(arg, dict):
        tags = _mon(ctl).sessions.stream_tags
        for stream, value in arg.items():
            tags.setdefault(stream, set()).update(_tags_arg(value))
    return None, False


def _untag_stream(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    if isinstance(arg, dict):
        tags = _mon(ctl).sessions.stream_tags
        for stream, value in arg.items():
            have = tags.get(stream)
            if have is not None:
                have.difference_update(_tags_arg(value))
                if not have:
                    del tags[stream]
    return None, False


def _stream_tags(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    names = _tags_arg(arg) if not isinstance(arg, dict) else list(arg)
    if not names:
        names = sorted(set(ctl.active_names()) | set(_mon(ctl).sessions.stream_tags))
    return {n: _mon(ctl).stream_tags(n) for n in names}, False


def _jwk_entries(arg: Any) -> list[Any]:
    """Normalised ``jwks`` entries: ``[jwk, perms]`` for keys, URL strings kept as is."""
    items = arg if isinstance(arg, list) and not _is_entry(arg) else [arg]
    out: list[Any] = []
    for item in items:
        url = jwks_urls.url_entry(item)
        if url is not None:  # a JWKS URL: kept as given (its keys are fetched)
            out.append(item)
            continue
        key = jwt.Key.from_entry(item)
        if key is None:
            raise ValueError(f"not a JWK (kty oct, RSA or EC): {str(item)[:80]}")
        out.append(key.to_entry())
    return out


def _is_entry(value: list[Any]) -> bool:
    """``[jwk, perms]`` or ``[url, perms]`` (one entry) rather than a list of entries."""
    return (
        len(value) == 2
        and (
            (isinstance(value[0], dict) and "kty" in value[0])
            or jwks_urls.url_entry(value[0]) is not None
        )
        and (isinstance(value[1], dict) and "kty" not in value[1])
    )


def _key_id(entry: Any) -> str:
    url = jwks_urls.url_entry(entry)
    if url is not None:
        return url[0]
    if isinstance(entry, str):
        return entry
    key = jwt.Key.from_entry(entry)
    return key.kid if key is not None else ""


def _stored(ctl: Controller) -> list[Any]:
    data = ctl.store.data
    if not isinstance(data.get("jwks"), list):
        data["jwks"] = []
    stored: list[Any] = data["jwks"]
    return stored


def _jwks(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    """A list replaces the keys (``[jwk, perms]`` entries, bare JWKs or JWKS URLs);
    anything else reads them."""
    if not isinstance(arg, list):
        return list(_stored(ctl)), False
    try:
        ctl.store.data["jwks"] = _jwk_entries(arg)
    except ValueError as exc:
        return {"error": str(exc)}, False
    return list(_stored(ctl)), True


def _addjwks(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    """Add keys; one with the ``kid`` (or URL) of a stored one replaces it."""
    try:
        new = _jwk_entries(arg)
    except ValueError as exc:
        return {"error": str(exc)}, False
    ids = {_key_id(e) for e in new if _key_id(e)}
    kept = [e for e in _stored(ctl) if not _key_id(e) or _key_id(e) not in ids]
    ctl.store.data["jwks"] = kept + new
    return list(_stored(ctl)), True


def _deletejwks(ctl: Controller, arg: Any, _ctx: Context) -> Result:
    """Delete by key id or URL (a string or a list of them) or by JWK objects."""
    items = arg if isinstance(arg, list) else [arg]
    ids = {i if isinstance(i, str) else _key_id(i) for i in items} - {""}
    ctl.store.data["jwks"] = [e for e in _stored(ctl) if _key_id(e) not in ids]
    return list(_stored(ctl)), True


COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("trigger_stat", _trigger_stat),
    ("trigger_fail", _trigger_fail),
    ("trigger_stats", _trigger_stats),
    ("stats_timing", _stats_timing),
    ("clients", _clients),
    ("totals", _totals),
    ("stats_streams", _stats_streams),
    ("invalidate_sessions", _invalidate_sessions),
    ("stop_sessions", _stop_sessions),
    ("stop_sessid", _stop_sessid),
    ("stop_tag", _stop_tag),
    ("tag_sessid", _tag_sessid),
    ("tag_stream", _tag_stream),
    ("untag_stream", _untag_stream),
    ("stream_tags", _stream_tags),
    ("jwks", _jwks),
    ("addjwks", _addjwks),
    ("deletejwks", _deletejwks),
)
