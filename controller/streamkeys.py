"""Stream keys: secret publish names that map to a stream (reference 2.3, 3.3, 8).

The config's top-level ``streamkeys`` object is ``{key: stream}``. An RTMP publish
whose name is a configured key goes to that key's stream, bypassing the stream's push
password and host whitelist (the key is the credential). The API commands:

* ``streamkeys``: an object replaces the whole set; any argument lists ``{key: stream}``
* ``streamkey_add``: ``{key: stream}`` -> ``{"added": [keys]}``
* ``streamkey_del``: a key, an array of keys or an object (its keys) -> ``{"deleted": [keys]}``
* ``streamkey_lookup`` (ours, for connectors over UDP): a key -> its stream or ``""``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.streamname import sanitize

if TYPE_CHECKING:
    from controller.server import Controller

CONFIG_KEY = "streamkeys"
Result = tuple[Any, bool]


def _keys(ctl: Controller) -> dict[str, str]:
    """The live ``streamkeys`` object of the config (created, and repaired if malformed)."""
    data = ctl.store.data
    keys = data.get(CONFIG_KEY)
    if not isinstance(keys, dict):
        keys = data[CONFIG_KEY] = {}
    return keys


def _clean(arg: Any, what: str) -> dict[str, str]:
    """Validate a ``{key: stream}`` argument; the stream names are sanitised."""
    from controller.api import ApiError  # api imports this module: import late

    if not isinstance(arg, dict):
        raise ApiError(f"{what} needs an object {{key: stream}}")
    out: dict[str, str] = {}
    for key, stream in arg.items():
        name = sanitize(stream) if isinstance(stream, str) else ""
        if not key or not name:
            raise ApiError(f"{what}: key {key!r} needs a non-empty key and stream name")
        out[key] = name
    return out


def lookup(ctl: Controller, key: str) -> str:
    """The stream ``key`` publishes to, or "" when it is no stream key."""
    stream = _keys(ctl).get(key)
    return stream if isinstance(stream, str) else ""


def _streamkeys(ctl: Controller, arg: Any, _ctx: Any) -> Result:
    changed = False
    if isinstance(arg, dict):
        new = _clean(arg, "streamkeys")
        keys = _keys(ctl)
        if new != keys:
            keys.clear()
            keys.update(new)
            changed = True
            ctl.logbook.emit("CONF", f"Stream keys replaced ({len(new)} keys)")
    return dict(_keys(ctl)), changed


def _streamkey_add(ctl: Controller, arg: Any, _ctx: Any) -> Result:
    new = _clean(arg, "streamkey_add")
    keys = _keys(ctl)
    added = [k for k, v in new.items() if keys.get(k) != v]
    keys.update(new)
    for key in added:
        ctl.logbook.emit("CONF", f"Stream key added for stream {new[key]}")
    return {"added": added}, bool(added)


def _streamkey_del(ctl: Controller, arg: Any, _ctx: Any) -> Result:
    if isinstance(arg, str):
        wanted = [arg]
    elif isinstance(arg, list):
        wanted = [k for k in arg if isinstance(k, str)]
    elif isinstance(arg, dict):
        wanted = list(arg)
    else:
        wanted = []
    keys = _keys(ctl)
    deleted = [k for k in dict.fromkeys(wanted) if keys.pop(k, None) is not None]
    if deleted:
        ctl.logbook.emit("CONF", f"{len(deleted)} stream key(s) deleted")
    return {"deleted": deleted}, bool(deleted)


def _streamkey_lookup(ctl: Controller, arg: Any, _ctx: Any) -> Result:
    return (lookup(ctl, arg) if isinstance(arg, str) else ""), False


COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("streamkeys", _streamkeys),
    ("streamkey_add", _streamkey_add),
    ("streamkey_del", _streamkey_del),
    ("streamkey_lookup", _streamkey_lookup),
)
