"""Controller-side triggers with the real MistController and real handlers.

Each test asserts the payload lines MistServer sends (reference 7.2), line by line.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import psutil

from controller.version import RELEASE, VERSION
from tests.controller.conftest import base_config, free_port, wait_for
from tests.triggers.handlers import ScriptHandler


def hook(script: ScriptHandler, sync: bool = True, **extra: Any) -> list[dict[str, Any]]:
    return [{"handler": str(script.path), "sync": sync, **extra}]


def test_system_stream_and_output_triggers(mist_factory: Any, script: ScriptHandler) -> None:
    dummy_port = free_port()
    cfg = base_config(0, dummy_port)
    names = (
        "SYSTEM_START",
        "SYSTEM_STOP",
        "OUTPUT_START",
        "OUTPUT_STOP",
        "STREAM_ADD",
        "STREAM_CONFIG",
        "STREAM_REMOVE",
    )
    cfg["config"]["triggers"] = {name: hook(script) for name in names}
    script.answer("SYSTEM_STOP", "false")
    mist = mist_factory(cfg)
    (start,) = wait_for(lambda: script.calls("SYSTEM_START"), what="SYSTEM_START")
    assert start.payload == [f"{VERSION} {RELEASE}"]
    (out_start,) = wait_for(lambda: script.calls("OUTPUT_START"), 20, what="OUTPUT_START")
    assert len(out_start.payload) == 1
    assert json.loads(out_start.payload[0]) == {
        "connector": "Dummy",
        "port": dummy_port,
        "greeting": "hi",
    }

    body = {"name": "cam", "source": "push://"}
    mist.api({"addstream": {"cam": body}})
    (add,) = script.calls("STREAM_ADD")
    assert add.payload[0] == "cam" and json.loads(add.payload[1]) == body
    script.answer("STREAM_ADD", "false")
    reply = mist.api({"addstream": {"refused": {"source": "push://"}}})
    assert "refused" not in reply["streams"]
    changed = {"name": "cam", "source": "push://10.0.0.1"}
    mist.api({"addstream": {"cam": changed}})
    (config,) = script.calls("STREAM_CONFIG")
    assert config.payload[0] == "cam" and json.loads(config.payload[1]) == changed
    script.answer("STREAM_CONFIG", "no")
    reply = mist.api({"addstream": {"cam": {"name": "cam", "source": "push://other"}}})
    assert reply["streams"]["cam"]["source"] == "push://10.0.0.1"  # reverted
    script.answer("STREAM_REMOVE", "false")
    assert "cam" in mist.api({"deletestream": "cam"})["streams"]
    script.answer("STREAM_REMOVE", "true")
    assert "cam" not in mist.api({"deletestream": "cam"})["streams"]
    assert [c.payload for c in script.calls("STREAM_REMOVE")] == [["cam"], ["cam"]]

    mist.api({"deleteprotocol": {"connector": "Dummy", "port": dummy_port, "greeting": "hi"}})
    (out_stop,) = wait_for(lambda: script.calls("OUTPUT_STOP"), 20, what="OUTPUT_STOP")
    assert json.loads(out_stop.payload[0])["connector"] == "Dummy"

    # SYSTEM_STOP answering false aborts the shutdown; true lets it through.
    assert mist.proc is not None
    mist.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: script.calls("SYSTEM_STOP"), what="SYSTEM_STOP")
    time.sleep(0.5)
    assert mist.proc.poll() is None and mist.ready()
    script.answer("SYSTEM_STOP", "true")
    assert mist.stop() == 0
    assert [c.payload for c in script.calls("SYSTEM_STOP")] == [["shutdown requested"]] * 2
    stats = script.calls()
    assert all(c.env["MIST_NAME"] == "test" for c in stats)


def test_system_start_false_shuts_down(mist_factory: Any, script: ScriptHandler) -> None:
    cfg = base_config(0)
    cfg["config"]["triggers"] = {"SYSTEM_START": hook(script)}
    script.answer("SYSTEM_START", "false")
    mist = mist_factory(cfg, start=False)
    mist.start(wait=False)
    assert mist.proc is not None
    assert mist.proc.wait(20) == 0
    assert len(script.calls("SYSTEM_START")) == 1


def test_stream_source_load_ready_end_abort(mist_factory: Any, script: ScriptHandler) -> None:
    cfg = base_config(0)
    cfg["streams"] = {
        "src": {"name": "src", "source": "dummy://original", "shm": True},
        "noload": {"name": "noload", "source": "dummy://x"},
    }
    cfg["config"]["triggers"] = {
        "STREAM_SOURCE": hook(script, streams=["src"]),
        "STREAM_LOAD": hook(script),
        # Filtered: other tests may publish streams on the same machine's bus.
        "STREAM_READY": hook(script, sync=False, streams=["src"]),
        "STREAM_END": hook(script, sync=False, streams=["src"]),
        "INPUT_ABORT": hook(script, sync=False, streams=["src"]),
    }
    script.answer("STREAM_SOURCE", "dummy://replaced\n")
    mist = mist_factory(cfg)
    wait_for(
        lambda: mist.api({"capabilities": 1}, "/api2")["capabilities"]["inputs"].get("Dummy"),
        15,
        what="capabilities",
    )
    assert mist.udp({"ensure_input": "src"})["ensure_input"]["status"] == "started"
    assert [c.payload for c in script.calls("STREAM_SOURCE")] == [["src"]]
    assert [c.payload for c in script.calls("STREAM_LOAD")] == [["src"]]
    pid = mist.api({"active_streams": ["pid"]}, "/api2")["active_streams"]["src"][0]
    assert psutil.Process(pid).cmdline()[-4:] == ["-s", "src", "dummy://replaced", "--shm"]
    (ready,) = wait_for(lambda: script.calls("STREAM_READY"), 30, what="STREAM_READY")
    assert ready.payload == ["src", "Dummy"]

    psutil.Process(pid).kill()
    (abort,) = wait_for(lambda: script.calls("INPUT_ABORT"), 30, what="INPUT_ABORT")
    assert abort.payload[:4] == ["src", "dummy://replaced", "MistInDummy", str(pid)]
    assert abort.payload[4] == "SIGKILL" and "SIGKILL" in abort.payload[5]
    (end,) = wait_for(lambda: script.calls("STREAM_END"), 30, what="STREAM_END")
    assert end.payload == ["src", "0", "0", "0", "0", "0", "0"]

    script.answer("STREAM_LOAD", "false")
    refused = mist.udp({"ensure_input": "noload"})["ensure_input"]
    assert refused["status"] == "error" and "STREAM_LOAD" in refused["error"]
    assert [c.payload for c in script.calls("STREAM_LOAD")][-1] == ["noload"]
    assert not script.calls("STREAM_SOURCE")[1:]  # filtered to "src"
