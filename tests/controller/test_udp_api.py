"""The UDP API with the real controller, and the child-side client in common.control."""

from __future__ import annotations

import json
import socket

import pytest

from common import control
from tests.controller.conftest import base_config, udp_request, wait_for


def test_commands_over_udp(mist_factory) -> None:
    mist = mist_factory(base_config(0))
    version = mist.udp({"version": True})
    assert version["version"]["release"] == "mistpy" and version["LTS"] == 1
    assert "config" not in version and "log" not in version  # UDP is minimal
    reply = mist.udp({"addstream": {"udpcam": {"source": "push://"}}})
    assert reply["streams"]["udpcam"]["source"] == "push://"
    assert "udpcam" in json.loads(mist.config.read_text())["streams"]
    reply = mist.udp({"deletestream": "udpcam", "config": {"serverid": "u"}})
    assert "udpcam" not in reply["streams"] and reply["config"]["serverid"] == "u"
    assert mist.udp({"config_backup": True})["config_backup"]["config"]["serverid"] == "u"
    assert set(mist.udp({"load": True})["load"]) == {"mem", "shm", "cpu"}
    assert isinstance(mist.udp({"active_streams": True})["active_streams"], list)
    assert all(len(line) == 7 for line in mist.udp({"log": True})["log"])
    assert "error" in mist.udp({"addprotocol": {"no": "connector"}})
    # bogus datagrams get an error and the server keeps going
    assert "error" in udp_request(mist.port, None, raw=b"\x00garbage")
    assert "error" in udp_request(mist.port, None, raw=b"[]")
    assert mist.udp({"ui_settings": {"a": 1}})["ui_settings"] == {"a": 1}


def test_heartbeat_gets_no_reply_and_shutdown_works(mist_factory) -> None:
    mist = mist_factory(base_config(0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(
            json.dumps({"heartbeat": {"pid": 1, "time": 0}}).encode(), ("127.0.0.1", mist.port)
        )
        with pytest.raises(TimeoutError):
            sock.recvfrom(100)
    assert mist.udp({"shutdown": True})["shutdown"] == "Shutting down"
    assert mist.proc.wait(20) == 0


def test_control_client(mist_factory, monkeypatch) -> None:
    cfg = base_config(0)
    cfg["streams"]["ccam"] = {"name": "ccam", "source": "dummy://c"}
    mist = mist_factory(cfg)
    monkeypatch.setenv("MIST_CONTROL", f"127.0.0.1:{mist.port}")
    assert control.control_address() == ("127.0.0.1", mist.port)
    wait_for(
        lambda: mist.udp({"capabilities": 1})["capabilities"]["inputs"].get("Dummy"),
        15,
        what="capabilities",
    )
    assert control.ensure_input("ccam", timeout=5) == {"stream": "ccam", "status": "started"}
    assert control.ensure_input("CCam", timeout=5)["status"] == "running"  # sanitized name
    reply = control.request({"version": True})
    assert reply is not None and reply["version"]["release"] == "mistpy"
    assert mist.stop() == 0
    # nobody listening: a clear "no controller" error, quickly
    gone = control.ensure_input("ccam", timeout=0.5)
    assert gone == {"stream": "ccam", "status": "error", "error": control.NO_CONTROLLER}


def test_remaining_commands_over_udp(mist_factory, tmp_path) -> None:
    mist = mist_factory(base_config(0, browse_roots=[str(tmp_path)]))
    proto = {"connector": "Nope", "port": 1}
    assert mist.udp({"addprotocol": proto})["config"]["protocols"][0]["connector"] == "Nope"
    new = {"connector": "Nope", "port": 2}
    assert mist.udp({"updateprotocol": [proto, new]})["config"]["protocols"][0]["port"] == 2
    assert mist.udp({"deleteprotocol": new})["config"]["protocols"] == []
    assert mist.udp({"streams": {"u1": {"source": "push://"}}})["streams"]["u1"]["name"] == "u1"
    backup = mist.udp({"config_backup": True})["config_backup"]
    mist.udp({"addstream": {"u2": {"source": "push://"}}})
    assert set(mist.udp({"config_restore": backup, "streams": True})["streams"]) == {"u1"}
    assert mist.udp({"save": True})["save"] == "Saved"
    assert json.loads(mist.config.read_text())["streams"].keys() == {"u1"}
    assert mist.udp({"browse": ""})["browse"]["path"] == [str(tmp_path)]
    assert "error" in mist.udp({"browse": "/"})["browse"]
    capa = mist.udp({"capabilities": True})["capabilities"]
    assert {"connectors", "inputs", "cpu", "mem", "load"} <= set(capa)
    assert mist.udp({"clearstatlogs": True, "log": True})["log"] == []
    assert mist.udp({"api_endpoint": True})["api_endpoint"].endswith(f":{mist.port}")
    assert mist.udp({"config_reload": True})["LTS"] == 1
