"""Connector and input supervision with the real controller and the dummy programs."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil

from tests.controller.conftest import base_config, free_port, wait_for


def greeting(port: int) -> tuple[str, int] | None:
    """(greeting, pid) from the dummy connector on ``port``, or None when nobody listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            data = sock.makefile().readline().split()
    except OSError:
        return None
    return (data[0], int(data[1])) if len(data) == 2 else None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_connector_is_back_within_5s_and_shutdown_leaves_nothing(mist_factory) -> None:
    dport = free_port()
    mist = mist_factory(base_config(0, dport))
    hello, pid = wait_for(lambda: greeting(dport), 15, 0.1, "the dummy connector")
    assert hello == "hi"  # the protocol's option reached the child as --greeting
    wait_for(lambda: mist.protocol_online() == [1], 5, what="online 1")
    child = psutil.Process(pid)
    assert child.ppid() == mist.proc.pid
    env = child.environ()
    assert env["MIST_CHILD"] == "1" and env["MIST_CONTROL"] == f"127.0.0.1:{mist.port}"
    cmd = child.cmdline()
    assert cmd[-8:] == ["-p", str(dport), "-i", "0.0.0.0", "-g", "4", "--greeting", "hi"]

    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    _, new_pid = wait_for(
        lambda: (g := greeting(dport)) and g[1] != pid and g, 5, 0.05, "the connector back"
    )
    assert time.monotonic() - killed_at < 5
    wait_for(lambda: mist.protocol_online() == [1], 5, what="online again")
    log = mist.api({"log": True}, "/api2")["log"]
    assert any("signal SIGKILL" in line[2] and "restarting" in line[2] for line in log)

    assert mist.stop() == 0
    wait_for(lambda: gone(new_pid), 5, what="connector gone after SIGTERM")
    assert greeting(dport) is None


def test_removed_protocol_is_stopped_and_logs_flow(mist_factory) -> None:
    dport = free_port()
    mist = mist_factory(base_config(0, dport))
    _, pid = wait_for(lambda: greeting(dport), 15, 0.1, "the dummy connector")
    # the child's own log lines reach the controller with program, pid and kind
    log = wait_for(
        lambda: [
            line
            for line in mist.api({"log": True}, "/api2")["log"]
            if line[1] == "WARN" and line[5] == "MistOutDummy"
        ],
        5,
        what="the child's WARN line",
    )
    assert log[0][4] == pid and "client connected" in log[0][2]
    assert log[0][6].startswith("dummy_connector.py:")
    proto = {"connector": "Dummy", "port": dport, "greeting": "hi"}
    mist.api({"deleteprotocol": proto}, "/api2")
    wait_for(lambda: gone(pid), 8, what="removed connector stopped")
    assert greeting(dport) is None


def test_stalled_connector_is_killed_and_restarted(mist_factory) -> None:
    dport = free_port()
    cfg = base_config(0, None, stall_timeout=1.5)
    cfg["config"]["protocols"] = [{"connector": "Dummy", "port": dport, "stall": True}]
    mist = mist_factory(cfg)
    first = wait_for(lambda: greeting(dport), 15, 0.1, "the dummy connector")
    assert first[0] == "hello"
    first_pid = first[1]
    wait_for(
        lambda: any(
            "sent no heartbeat" in line[2] for line in mist.api({"log": True}, "/api2")["log"]
        ),
        15,
        0.2,
        "the stall kill",
    )
    wait_for(lambda: gone(first_pid), 5, what="stalled child gone")


def test_controller_death_takes_children_along(mist_factory) -> None:
    dport = free_port()
    mist = mist_factory(base_config(0, dport))
    _, pid = wait_for(lambda: greeting(dport), 15, 0.1, "the dummy connector")
    mist.proc.kill()
    mist.proc.wait()
    wait_for(lambda: gone(pid), 8, what="orphaned connector exit")


def test_logfile_and_debug_level(mist_factory, tmp_path) -> None:
    dport = free_port()
    logfile = tmp_path / "mist.log"
    mist = mist_factory(base_config(0, dport), args=["-L", str(logfile), "-g", "3"])
    wait_for(lambda: greeting(dport), 15, 0.1, "the dummy connector")
    text = wait_for(
        lambda: "client connected" in (t := logfile.read_text()) and t, 5, what="log file line"
    )
    assert "WARN MistOutDummy[" in text
    assert "listening on" not in text  # INFO is above -g 3
    assert "\033[" not in text  # no colours in files
    assert mist.stop() == 0


def test_inputs_on_demand_always_on_and_idle_exit(mist_factory) -> None:
    cfg = base_config(0)
    cfg["streams"] = {
        "tcam": {"name": "tcam", "source": "dummy://camera"},
        "tidle": {"name": "tidle", "source": "dummy://idle", "idle_exit": 1},
        "tkeep": {"name": "tkeep", "source": "dummy://keep", "always_on": True},
        "tnone": {"name": "tnone", "source": "nothing://x"},
    }
    mist = mist_factory(cfg)
    wait_for(
        lambda: mist.api({"capabilities": 1}, "/api2")["capabilities"]["inputs"].get("Dummy"),
        15,
        what="capabilities",
    )
    first = mist.udp({"ensure_input": "tcam"})["ensure_input"]
    assert first == {"stream": "tcam", "status": "started"}
    assert mist.udp({"ensure_input": "tcam"})["ensure_input"]["status"] == "running"
    assert mist.udp({"ensure_input": "tnone"})["ensure_input"]["status"] == "error"
    missing = mist.udp({"ensure_input": "nosuch"})["ensure_input"]
    assert missing["status"] == "error" and "not configured" in missing["error"]
    fields = mist.api({"active_streams": ["pid", "inputs"]}, "/api2")["active_streams"]
    pid = fields["tcam"][0]
    assert fields["tcam"][1] == 1
    cmd = psutil.Process(pid).cmdline()
    assert cmd[-3:] == ["-s", "tcam", "dummy://camera"]
    lines = wait_for(
        lambda: [
            entry
            for entry in mist.api({"log": True}, "/api2")["log"]
            if entry[5] == "MistInDummy" and entry[3] == "tcam"
        ],
        5,
        what="input log line with its stream",
    )
    assert "dummy://camera" in lines[0][2]
    # always_on: started by the controller, restarted after a crash
    keep_pid = wait_for(
        lambda: mist.api({"active_streams": ["pid"]}, "/api2")["active_streams"].get(
            "tkeep", [None]
        )[0],
        10,
        what="always_on input",
    )
    os.kill(keep_pid, signal.SIGKILL)
    wait_for(
        lambda: (
            (
                p := mist.api({"active_streams": ["pid"]}, "/api2")["active_streams"].get(
                    "tkeep", [None]
                )[0]
            )
            and p != keep_pid
        ),
        5,
        what="always_on input restarted",
    )
    # an on-demand input that exits 0 (idle) is not restarted
    assert mist.udp({"ensure_input": "tidle"})["ensure_input"]["status"] == "started"
    idle_pid = mist.api({"active_streams": ["pid"]}, "/api2")["active_streams"]["tidle"][0]
    assert psutil.Process(idle_pid).cmdline()[-2:] == ["--idle_exit", "1"]
    wait_for(lambda: gone(idle_pid), 8, what="idle input exit")
    wait_for(
        lambda: "tidle" not in mist.api({"active_streams": True}, "/api2")["active_streams"],
        5,
        what="idle forgotten",
    )
    # deleting a stream stops its input
    mist.api({"deletestream": "tcam"}, "/api2")
    wait_for(lambda: gone(pid), 8, what="input of a deleted stream stopped")
    assert mist.stop() == 0
    wait_for(lambda: gone(keep_pid), 5, what="inputs gone")


def test_shared_memory_of_dead_inputs_is_cleaned(mist_factory) -> None:
    from shm.cleanup import stream_page_names

    stream = f"tshm{os.getpid()}"
    cfg = base_config(0)
    cfg["streams"] = {stream: {"name": stream, "source": "dummy://shm", "shm": True}}
    mist = mist_factory(cfg)
    wait_for(
        lambda: mist.api({"capabilities": 1}, "/api2")["capabilities"]["inputs"].get("Dummy"),
        15,
        what="capabilities",
    )
    assert mist.udp({"ensure_input": stream})["ensure_input"]["status"] == "started"
    wait_for(
        lambda: mist.api({"streams": 1}, "/api2")["streams"][stream]["online"] == 1,
        10,
        what="stream online",
    )
    pages = stream_page_names(stream)
    assert pages
    info = mist.api({"active_streams": {"fields": ["status", "pid"], "longform": True}}, "/api2")[
        "active_streams"
    ]
    assert info["data"][stream]["status"] == "Online"
    os.kill(info["data"][stream]["pid"], signal.SIGKILL)
    wait_for(lambda: not stream_page_names(stream), 5, what="pages of the killed input removed")
    # a clean shutdown leaves nothing either
    assert mist.udp({"ensure_input": stream})["ensure_input"]["status"] == "started"
    wait_for(lambda: stream_page_names(stream), 10, what="pages again")
    assert mist.stop() == 0
    assert not stream_page_names(stream)


def test_usage_error_is_fatal_until_the_config_changes(mist_factory) -> None:
    cfg = base_config(0)
    cfg["config"]["protocols"] = [{"connector": "Dummy", "port": "notaport"}]
    mist = mist_factory(cfg)
    wait_for(
        lambda: mist.protocol_online() == ["Invalid configuration"], 15, what="usage error noticed"
    )
    log = mist.api({"log": True}, "/api2")["log"]
    assert sum("rejected its arguments" in line[2] for line in log) == 1
    dport = free_port()
    mist.api(
        {
            "updateprotocol": [
                {"connector": "Dummy", "port": "notaport"},
                {"connector": "Dummy", "port": dport},
            ]
        },
        "/api2",
    )
    wait_for(lambda: greeting(dport), 15, 0.1, "the fixed connector")
    assert mist.protocol_online() == [1]
