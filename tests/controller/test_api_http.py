"""Every API command through HTTP against the real MistController."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api import COMMANDS
from controller.config_store import shape_problem
from tests.controller.conftest import Mist, base_config, free_port, post, wait_for


@pytest.fixture(scope="module")
def shared(module_factory) -> Mist:
    return module_factory(base_config(0))


@pytest.fixture
def api_mist(shared: Mist) -> Mist:
    """The module's controller, reset to the base config."""
    shared.api({"config_restore": base_config(0)}, "/api2")
    return shared


def _get(port: int, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode(), resp.headers.get("Content-Type", "")


def test_response_shapes_and_transport_variants(api_mist: Mist) -> None:
    mist = api_mist
    full = mist.api({})
    assert full["LTS"] == 1
    assert full["authorize"] == {"status": "OK", "local": True}
    assert set(full) >= {"streams", "config", "log", "LTS"}
    assert full["streams"]["live"]["source"] == "push://"
    assert full["streams"]["live"]["online"] == 0
    cfg = full["config"]
    assert {"iid", "version", "time", "serverid"} <= set(cfg)
    assert cfg["serverid"] == "test"
    # /api2 is minimal: no streams/config/log unless asked
    minimal = mist.api({"version": True}, "/api2")
    assert "streams" not in minimal and "log" not in minimal
    assert set(minimal["version"]) == {"version", "release", "date", "time"}
    # the `command` GET variable, JSONP wrapping, and the blank line after the JSON
    query = urllib.parse.urlencode({"command": json.dumps({"version": 1}), "callback": "cb"})
    body, ctype = _get(mist.port, f"/api2?{query}")
    assert ctype.startswith("text/javascript")
    assert body.startswith("cb(") and body.endswith(");\n\n")
    assert json.loads(body[3:-4])["version"]["release"] == "mistpy"
    # `command` as a form POST variable
    form = urllib.parse.urlencode({"command": json.dumps({"ui_settings": True})}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{mist.port}/api2", data=form)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["ui_settings"] == {}
    # any other URL without a command serves the web page
    page, ctype = _get(mist.port, "/")
    assert ctype.startswith("text/html") and "<html" in page


def test_bogus_json_gets_an_error_and_the_server_keeps_serving(api_mist: Mist) -> None:
    mist = api_mist
    for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"{" * 5000, b"null"):
        reply = post(mist.port, None, "/api", raw=raw)
        assert "error" in reply, raw
        assert "streams" not in reply
    bad_args = mist.api(
        {
            "addstream": "nope",
            "deletestream": 5,
            "addprotocol": [1, 2],
            "updateprotocol": {"a": 1},
            "config_restore": [],
            "browse": {"x": 1},
            "active_streams": "x",
        },
        "/api2",
    )
    assert "error" in bad_args
    for bad in (
        {"config_restore": {"streams": []}},
        {"config_restore": {"config": {"protocols": [1]}}},
        {"config_restore": {"streams": {"a": 5}}},
        {"config": {"controller": 5}},
        {"config": {"debug": "loud"}},
    ):
        assert "error" in mist.api(bad, "/api2"), bad
    assert mist.api({"streams": True}, "/api2")["streams"]["live"]["source"] == "push://"
    assert mist.api({"version": 1}, "/api2")["version"]["version"]
    assert mist.proc.poll() is None


def test_streams_commands(api_mist: Mist) -> None:
    mist = api_mist
    reply = mist.api(
        {
            "addstream": {
                "cam1": {"source": "push://", "DVR": 30000},
                "vod": {"source": "/tmp/x.mp4"},
            }
        }
    )
    assert reply["streams"]["cam1"] == {
        "source": "push://",
        "DVR": 30000,
        "name": "cam1",
        "online": 0,
    }
    assert "vod" in reply["streams"]
    # several keys in one request, processed in MistServer's order
    reply = mist.api({"deletestream": ["vod"], "addstream": {"cam2": {"source": "push://"}}})
    assert set(reply["streams"]) == {"live", "cam1", "cam2"}
    reply = mist.api({"deletestream": "cam2"}, "/api2")
    assert set(reply["streams"]) == {"live", "cam1"}
    reply = mist.api({"deletestream": {"cam1": True}}, "/api2")
    assert set(reply["streams"]) == {"live"}
    # names must already be sanitized
    reply = mist.api({"addstream": {"Bad/Name": {"source": "push://"}}}, "/api2")
    assert "error" in reply and "Bad/Name" not in reply["streams"]
    reply = mist.api({"addstream": {"nosource": {"DVR": 1}}}, "/api2")
    assert "error" in reply
    # `streams` replaces the whole set
    reply = mist.api({"streams": {"a": {"source": "push://"}, "b": {"source": "push://"}}}, "/api2")
    assert set(reply["streams"]) == {"a", "b"}
    on_disk = json.loads(mist.config.read_text())
    assert set(on_disk["streams"]) == {"a", "b"}
    assert "online" not in on_disk["streams"]["a"]
    assert on_disk["custom_top_level"] == {"kept": True}


def test_protocol_commands_and_config(api_mist: Mist) -> None:
    mist = api_mist
    one = {"connector": "Dummy", "port": free_port(), "greeting": "a"}
    two = {"connector": "Missing", "port": 1}
    reply = mist.api({"addprotocol": [one, two]})
    protos = reply["config"]["protocols"]
    assert [p["connector"] for p in protos] == ["Dummy", "Missing"]
    wait_for(lambda: mist.protocol_online("Missing") == ["Not installed"], 10, what="Not installed")
    wait_for(lambda: mist.protocol_online("Dummy") == [1], 15, what="Dummy online")
    new = {**one, "greeting": "b"}
    reply = mist.api({"updateprotocol": [one, new]})
    assert reply["config"]["protocols"][0]["greeting"] == "b"
    reply = mist.api({"updateprotocol": [one, new]}, "/api2")
    assert "error" in reply  # the old one is gone
    reply = mist.api(
        {"deleteprotocol": two, "config": {"serverid": "renamed", "debug": 5, "ignored": 1}}
    )
    assert [p["connector"] for p in reply["config"]["protocols"]] == ["Dummy"]
    assert reply["config"]["serverid"] == "renamed"
    assert reply["config"]["debug"] == 5
    assert "ignored" not in reply["config"]
    on_disk = json.loads(mist.config.read_text())
    assert on_disk["config"]["protocols"] == [new]
    mist.api({"deleteprotocol": new})
    assert json.loads(mist.config.read_text())["config"]["protocols"] == []


def test_backup_restore_save_ui_settings(api_mist: Mist) -> None:
    mist = api_mist
    backup = mist.api({"config_backup": True}, "/api2")["config_backup"]
    assert backup["streams"]["live"]["source"] == "push://"
    assert backup["custom_top_level"] == {"kept": True}
    mist.api({"addstream": {"temp": {"source": "push://"}}, "ui_settings": {"theme": "dark"}})
    assert json.loads(mist.config.read_text())["ui_settings"] == {"theme": "dark"}
    assert mist.api({"ui_settings": True}, "/api2")["ui_settings"] == {"theme": "dark"}
    reply = mist.api({"config_restore": backup})
    assert "temp" not in reply["streams"]
    assert json.loads(mist.config.read_text())["ui_settings"] == {}
    assert mist.api({"save": True}, "/api2")["save"] == "Saved"
    assert mist.config.with_name("config.json.bak").exists()


def test_capabilities_log_load_version_active_streams(api_mist: Mist) -> None:
    mist = api_mist
    capa = wait_for(
        lambda: (
            (c := mist.api({"capabilities": True}, "/api2")["capabilities"])["connectors"].get(
                "Dummy"
            )
            and c
        ),
        15,
        what="Dummy in capabilities",
    )
    dummy = capa["connectors"]["Dummy"]
    assert dummy["optional"]["greeting"]["option"] == "--greeting"
    assert dummy["port"] == 4999
    assert capa["inputs"]["Dummy"]["source_match"] == ["dummy://*"]
    assert {"cpu", "mem", "load"} <= set(capa)
    load = mist.api({"load": True}, "/api2")["load"]
    assert set(load) == {"mem", "shm", "cpu"}
    log = mist.api({"log": True}, "/api2")["log"]
    assert log and all(len(line) == 7 for line in log)
    assert any(line[5] == "MistController" for line in log)
    active = mist.api({"active_streams": True}, "/api2")["active_streams"]
    assert isinstance(active, list)  # the bus is machine-wide: other programs' streams may show
    assert (
        mist.api({"api_endpoint": True}, "/api2")["api_endpoint"] == f"http://127.0.0.1:{mist.port}"
    )


def test_browse_is_confined(api_mist: Mist, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "clip.mp4").write_bytes(b"x")
    (media / "escape").symlink_to("/etc")
    mist = api_mist
    mist.api({"config_restore": base_config(0, browse_roots=[str(media)])}, "/api2")
    listing = mist.api({"browse": ""}, "/api2")["browse"]
    assert listing == {
        "path": [str(media)],
        "subdirectories": ["escape", "sub"],
        "files": ["clip.mp4"],
    }
    assert mist.api({"browse": str(media / "sub")}, "/api2")["browse"]["path"] == [
        str(media / "sub")
    ]
    for attempt in ("..", "../..", "/etc", "escape", "sub/../../", str(media) + "/../"):
        out = mist.api({"browse": attempt}, "/api2")["browse"]
        assert "error" in out and "files" not in out, attempt


def test_shutdown_local_only(mist_factory) -> None:
    mist = mist_factory(base_config(0))
    refused = mist.api({"shutdown": True}, "/api2", headers={"X-Forwarded-For": "10.0.0.1"})
    assert refused["authorize"]["status"] == "NOACC"
    made = mist.api(
        {"authorize": {"new_username": "u", "new_password": "p"}, "shutdown": True},
        "/api2",
        headers={"X-Forwarded-For": "10.0.0.1"},
    )
    assert made["authorize"]["status"] == "ACC_MADE"
    assert "local" in made["error"] and "shutdown" not in made
    assert mist.proc.poll() is None
    assert mist.api({"shutdown": True}, "/api2")["shutdown"] == "Shutting down"
    assert mist.proc.wait(20) == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
COMMAND_KEYS = [k for k, _ in COMMANDS if k not in ("shutdown",)] + [
    "authorize",
    "minimal",
    "logout",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=st.dictionaries(st.sampled_from(COMMAND_KEYS), JSON_VALUES, max_size=4))
def test_fuzzed_requests_never_break_the_api(api_mist: Mist, request: dict) -> None:
    reply = api_mist.api(request, "/api2")
    assert reply["LTS"] == 1
    if "error" in reply:
        assert isinstance(reply["error"], str) and "internal error" not in reply["error"], reply[
            "error"
        ]
    # still serving, and what is on disk is still a usable config
    assert api_mist.api({"version": 1}, "/api2")["version"]["release"] == "mistpy"
    assert shape_problem(json.loads(api_mist.config.read_text())) == ""
