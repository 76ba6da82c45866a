"""Stream keys under a real MistController: the streamkeys/streamkey_add/streamkey_del
API, persistence in config.json, and RTMP publishing by key into a stream whose push
password and host whitelist would refuse everyone else."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inputs.live_ingest import Hello, RecordReader
from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import module_factory as module_factory
from tests.outputs_http.conftest import Server as HttpServer
from tests.outputs_http.media import decode

from .conftest import ffmpeg_publish, shm_names, stop_proc, stream_state, wait_for, wait_ready
from .test_e2e import check_decoded, http_capture

KEY = "k3y-Abc123"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def mist(module_factory: Callable[..., Mist]) -> Iterator[tuple[Mist, int, int]]:
    rtmp, http = free_port(), free_port()
    cfg = base_config(0)
    cfg["config"]["protocols"] = [
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1", "timeout": 5},
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1"},
    ]
    # MistServer's UI "stream key only" mode: no host may push with the password alone
    cfg["streams"] = {"keyed": {"name": "keyed", "source": "push://invalid,127.0.0.2@secret"}}
    m = module_factory(cfg, args=["-g", "4"], builtin=True)
    wait_for(
        lambda: [m.protocol_online(c) for c in ("RTMP", "HTTP")] == [[1], [1]],
        60,
        "RTMP and HTTP connectors",
    )
    wait_for(lambda: _listening(rtmp) and _listening(http), 60, "connector ports")
    yield m, rtmp, http


def _publish_fails(url: str) -> bool:
    proc = ffmpeg_publish(url, 4)
    try:
        return proc.wait(20) != 0
    finally:
        stop_proc(proc)


def _saved_keys(m: Mist) -> object:
    return json.loads(m.config.read_text()).get("streamkeys")


def test_hello_carries_authorized() -> None:
    hellos = [Hello("RTMP", "1.2.3.4", "pw"), Hello("RTMP", "::1", "", authorized=True)]
    data = b"".join(bytes(h) for h in hellos)
    assert RecordReader().feed(data) == hellos
    assert b"authorized" not in bytes(hellos[0])  # old buffers see the same HELLO as before


def test_streamkey_api_and_persistence(mist: tuple[Mist, int, int]) -> None:
    m, _, _ = mist
    assert m.api({"streamkey_add": {"a": "one", "b": "two+x"}})["streamkey_add"] == {
        "added": ["a", "b"]
    }
    assert m.api({"streamkeys": True})["streamkeys"] == {"a": "one", "b": "two+x"}
    assert _saved_keys(m) == {"a": "one", "b": "two+x"}
    assert "error" in m.api({"streamkey_add": {"c": ""}})
    assert m.udp({"streamkey_lookup": "b"})["streamkey_lookup"] == "two+x"
    assert m.udp({"streamkey_lookup": "nope"})["streamkey_lookup"] == ""
    out = m.api({"streamkey_del": ["a", "missing"]})["streamkey_del"]
    assert out == {"deleted": ["a"]}
    assert m.api({"streamkey_del": {"b": 1}})["streamkey_del"] == {"deleted": ["b"]}
    # an object replaces the whole set
    assert m.api({"streamkeys": {"x": "one"}})["streamkeys"] == {"x": "one"}
    assert m.api({"streamkey_del": "x"})["streamkey_del"] == {"deleted": ["x"]}
    assert _saved_keys(m) == {}


def test_publish_by_stream_key(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    m, rtmp, http = mist
    # the password alone is not enough (host not whitelisted), nor is an unknown key
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/secret/keyed")
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/wrong/keyed")
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/anyapp/{KEY}")
    assert m.api({"streamkey_add": {KEY: "keyed"}})["streamkey_add"] == {"added": [KEY]}
    assert _saved_keys(m) == {KEY: "keyed"}
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/anyapp/{KEY}", 20)
    try:
        wait_ready("keyed")
        assert "keyed" in m.api({"active_streams": True})["active_streams"]
        out = tmp_path / "keyed.flv"
        http_capture(HttpServer(None, "127.0.0.1", http, out), "/keyed.flv", 2.5, out).join(20)  # type: ignore[arg-type]
        check_decoded(decode(out), 30)
    finally:
        stop_proc(pub)
    assert stream_state(KEY) is None and not shm_names(KEY)  # the key is no stream of its own
    assert m.api({"streamkey_del": KEY})["streamkey_del"] == {"deleted": [KEY]}
    assert _saved_keys(m) == {}
    wait_for(lambda: stream_state("keyed") is None, 30, "the keyed stream to end")
    assert _publish_fails(f"rtmp://127.0.0.1:{rtmp}/anyapp/{KEY}")
