"""SessionTable with a real TriggerService and shell-script handlers, in-process."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.sessions import ip_bytes, session_id, token_from
from controller.sessions import Session, SessionTable
from controller.triggers import TriggerService
from tests.triggers.handlers import ScriptHandler


def test_session_id_modes() -> None:
    ip = b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 7])
    assert ip_bytes("10.0.0.7") == ip
    assert ip_bytes("::ffff:10.0.0.7") == ip
    assert len(ip_bytes("2001:db8::1")) == 16
    want = hashlib.sha256(b"live" + ip + b"tok").hexdigest()
    assert session_id("viewer", 14, "live", "10.0.0.7", "tok", "HTTP") == want
    want = hashlib.sha256(b"live" + ip + b"tokRTMP").hexdigest()
    assert session_id("input", 15, "live", "10.0.0.7", "tok", "RTMP") == "I" + want
    assert session_id("output", 15, "live", "10.0.0.7", "tok", "RTMP") == "O" + want
    assert session_id("unspecified", 0, "a", "b", "c", "d") == "U" + hashlib.sha256().hexdigest()
    # mode bits select the parts: 8 only = per stream
    assert session_id("viewer", 8, "s", "1.2.3.4", "x", "y") == hashlib.sha256(b"s").hexdigest()


def test_token_sources() -> None:
    assert token_from({"tkn": "a"}, {"tkn": "b"}, {"X-Mist-Tkn": "c"}) == "a"
    assert token_from({"sid": "s"}) == "s"
    assert token_from({}, {"tkn": "b"}, {"X-Mist-Tkn": "c"}) == "b"
    assert token_from({}, {}, {"X-Mist-Tkn": "c"}) == "c"
    assert token_from({}) == ""


class Harness:
    def __init__(self, tmp: Path, triggers: dict[str, Any]) -> None:
        self.script = ScriptHandler(tmp)
        self.config: dict[str, Any] = {
            "triggers": {
                name: [{"handler": str(self.script.path), "sync": sync}]
                for name, sync in triggers.items()
            }
        }
        self.sent: list[tuple[tuple[str, int], dict[str, Any]]] = []
        self.ended: list[Session] = []
        self.service = TriggerService(
            lambda: self.config["triggers"], lambda s: [], lambda: ("iid", "srv"), self._log
        )
        self.table = SessionTable(
            lambda: self.config,
            self.service,
            lambda addr, obj: self.sent.append((addr, obj)),
            lambda sess, now: self.ended.append(sess),
        )
        self.n = 0

    def _log(self, *args: Any) -> None:
        pass

    async def open(self, **kw: Any) -> dict[str, Any]:
        self.n += 1
        req = {
            "cid": f"c{self.n}",
            "stream": "live",
            "host": "10.1.2.3",
            "token": "",
            "url": "http://h/live.flv",
            "kind": "viewer",
            "connector": "HTTP",
        }
        req.update(kw)
        return await self.table.open(req, ("127.0.0.1", 5000 + self.n))

    async def settle(self) -> None:
        for _ in range(200):
            if not self.service._tasks:
                return
            await asyncio.sleep(0.02)


async def test_user_new_once_per_session_and_denial_cached(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"USER_NEW": True})
    h.script.answer("USER_NEW", "false")
    first = await h.open(token="abc")
    assert not first["allow"]
    again = await h.open(token="abc")
    assert not again["allow"] and again["sessid"] == first["sessid"]
    (call,) = h.script.calls("USER_NEW")  # the denial is cached: asked once
    assert call.payload == [
        "live",
        "10.1.2.3",
        "abc",
        "HTTP",
        "http://h/live.flv",
        first["sessid"],
        "false",
    ]
    assert h.table.cached_denials == 1
    h.script.answer("USER_NEW", "true")
    other = await h.open(token="xyz")  # another token = another session
    assert other["allow"]
    await h.open(token="xyz", connector="HLS")  # same session: no new USER_NEW
    assert len(h.script.calls("USER_NEW")) == 2
    inputs = await h.open(kind="input", connector="RTMP")  # inputs skip USER_NEW
    assert inputs["allow"] and inputs["sessid"].startswith("I")
    assert len(h.script.calls("USER_NEW")) == 2
    await h.service.close()


async def test_concurrent_opens_share_one_decision(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"USER_NEW": True})
    h.script.sleep("USER_NEW", 0.3)
    results = await asyncio.gather(*(h.open() for _ in range(5)))
    assert all(r["allow"] for r in results)
    assert len(h.script.calls("USER_NEW")) == 1
    await h.service.close()


async def test_invalidate_kicks_and_conn_triggers(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"USER_NEW": True, "CONN_OPEN": True, "CONN_CLOSE": False})
    opened = await h.open(token="t")
    cid = f"c{h.n}"
    assert opened["allow"]
    (conn_open,) = h.script.calls("CONN_OPEN")
    assert conn_open.payload == ["live", "10.1.2.3", "HTTP", "http://h/live.flv"]
    assert h.table.update([[cid, 1000, 10, 5, 0, 0, 1234]]) == []
    h.script.answer("USER_NEW", "false")
    assert await h.table.invalidate(["live"]) == 1
    assert h.sent == [(("127.0.0.1", 5000 + h.n), {"session_kick": {"disconnect": [cid]}})]
    assert h.table.update([[cid, 2000, 20, 9, 0, 0, 2000]]) == [cid]  # reply repeats it
    denied = await h.open(token="t")  # the same viewer reconnecting stays out
    assert not denied["allow"]
    h.table.update([[cid, 2500, 20, 9, 0, 0, 2000]], closing=True)
    await h.settle()
    (close,) = h.script.calls("CONN_CLOSE")
    assert close.payload == ["live", "10.1.2.3", "HTTP", "http://h/live.flv"]
    sess = h.table.sessions[opened["sessid"]]
    assert (sess.down, sess.up, sess.packets) == (2500, 20, 9)
    await h.service.close()


async def test_session_end_fires_user_end(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"USER_END": False})
    h.table.linger = 0.0
    opened = await h.open(token="tk")
    cid = f"c{h.n}"
    h.table.tag_sessids({opened["sessid"]: "vip"})
    h.table.update([[cid, 500, 50, 0, 0, 0, 0]])
    h.table.tick(time.time(), time.monotonic(), 2.0)
    h.table.update([[cid, 800, 60, 0, 0, 0, 0]], closing=True)
    h.table.tick(time.time(), time.monotonic(), 1.0)
    assert [s.sessid for s in h.ended] == [opened["sessid"]]
    await h.settle()
    (call,) = h.script.calls("USER_END")
    assert call.payload[:4] == ["tk", "live", "HTTP", "10.1.2.3"]
    assert call.payload[5:8] == ["60", "800", "vip"]
    secs = call.payload[8].rpartition(":")[2]  # connection-seconds per host/connector/stream
    assert secs.isdigit()
    assert call.payload[8:11] == [f"10.1.2.3:{secs}", f"HTTP:{secs}", f"live:{secs}"]
    assert call.payload[11] == opened["sessid"]
    await h.service.close()


@pytest.mark.parametrize("how", ["stream", "stream_protocol", "sessid", "tag"])
async def test_stop_commands(tmp_path: Path, how: str) -> None:
    h = Harness(tmp_path, {})
    a = await h.open(host="10.0.0.1")
    await h.open(host="10.0.0.2", stream="other")
    await h.open(host="10.0.0.3", connector="RTMP")
    h.table.tag_sessids({a["sessid"]: ["bad"]})
    if how == "stream":
        assert h.table.stop_streams("live") == 2
    elif how == "stream_protocol":
        assert h.table.stop_streams({"live": "RTMP"}) == 1
    elif how == "sessid":
        assert h.table.stop_sessids([a["sessid"]]) == 1
    else:
        assert h.table.stop_tags("bad") == 1
    await h.service.close()


async def test_stale_connections_are_closed(tmp_path: Path) -> None:
    h = Harness(tmp_path, {})
    await h.open()
    assert len(h.table.conns) == 1
    h.table.tick(time.time(), time.monotonic() + 60, 1.0)
    assert not h.table.conns
    await h.service.close()


ROWS = st.lists(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.lists(st.one_of(st.integers(-5, 10**12), st.text(max_size=3), st.none()), max_size=9),
    ),
    max_size=10,
)


@given(rows=ROWS)
@settings(max_examples=100, deadline=None)
def test_counter_reports_of_any_shape_are_safe(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Any]
) -> None:
    h = Harness(tmp_path_factory.mktemp("fuzz"), {})
    asyncio.run(h.open())
    cid = f"c{h.n}"
    rows = [[cid, *r[1:]] if isinstance(r, list) and r else r for r in rows]
    h.table.update(rows)
    h.table.update(rows, closing=True)
    for sess in h.table.sessions.values():
        assert sess.down >= 0 and sess.up >= 0
