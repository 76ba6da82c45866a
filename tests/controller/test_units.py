"""The pieces without the controller: capabilities spec, log format, input choice, config file,
and the child runtime (heartbeat + machine log lines) of a real child process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from common.capabilities import Capabilities, Setting, missing_required, options_to_args
from common.log import format_machine, parse_machine
from controller.config_store import ConfigError, ConfigStore
from controller.inputs import choose_input
from tests.controller.conftest import DUMMY, free_port

CAPS = Capabilities(
    name="Thing",
    desc="a test connector",
    kind="connector",
    port=1234,
    url_match=["/$.thing"],
    push_urls=["thing://*"],
    settings=[
        Setting("listlimit", "Max entries", "uint", 10),
        Setting("mode", "Mode", "select", "a", select=("a", "b")),
        Setting("flag", "A switch", "bool", False),
        Setting("key", "Needed", "str", required=True),
        Setting("extra", "JSON blob", "json"),
    ],
)


def test_capabilities_json_shape() -> None:
    capa = CAPS.to_json()
    assert (
        capa["name"] == "Thing"
        and capa["friendly"] == "Thing"
        and capa["desc"] == "a test connector"
    )
    assert (
        capa["port"] == 1234
        and capa["url_match"] == ["/$.thing"]
        and capa["push_urls"] == ["thing://*"]
    )
    assert capa["required"] == {
        "key": {"name": "key", "help": "Needed", "option": "--key", "type": "str"}
    }
    opt = capa["optional"]
    assert opt["port"]["option"] == "--port" and opt["port"]["default"] == 1234
    assert opt["interface"]["default"] == "0.0.0.0"
    assert opt["listlimit"] == {
        "name": "listlimit",
        "help": "Max entries",
        "option": "--listlimit",
        "type": "uint",
        "default": 10,
    }
    assert opt["mode"]["select"] == ["a", "b"]
    assert "type" not in opt["flag"]  # a bare flag
    json.dumps(capa)
    inp = Capabilities("Foo", "input", kind="input", source_match=["/*.foo"], priority=5).to_json()
    assert inp["source_match"] == ["/*.foo"] and inp["priority"] == 5 and "port" not in inp


def test_click_options_and_argv_round_trip() -> None:
    seen: dict = {}

    @click.command()
    @CAPS.click_options()
    def prog(**kwargs: object) -> None:
        seen.update(kwargs)

    runner = CliRunner()
    res = runner.invoke(prog, ["-j"])
    assert res.exit_code == 0 and json.loads(res.output) == CAPS.to_json()
    entry = {
        "connector": "Thing",
        "key": "k1",
        "listlimit": 3,
        "flag": True,
        "extra": {"a": 1},
        "unknown": 5,
    }
    argv = options_to_args(CAPS.to_json(), entry, skip=("port",))
    assert argv == [
        "--key",
        "k1",
        "--listlimit",
        "3",
        "--flag",
        "--extra",
        '{"a": 1}',
    ]  # required first
    res = runner.invoke(prog, ["-p", "99", "-g", "5", *argv])
    assert res.exit_code == 0, res.output
    assert seen == {
        "port": 99,
        "interface": "0.0.0.0",
        "debug": 5,
        "listlimit": 3,
        "mode": "a",
        "flag": True,
        "key": "k1",
        "extra": '{"a": 1}',
    }
    assert runner.invoke(prog, ["--listlimit", "3"]).exit_code == 2  # --key is required
    assert missing_required(CAPS.to_json(), {"listlimit": 1}) == ["key"]
    assert missing_required(CAPS.to_json(), entry) == []
    with pytest.raises(ValueError, match="unknown type"):
        Setting("x", "y", "float")


@given(
    kind=st.sampled_from(["FAIL", "ERROR", "WARN", "INFO", "HIGH", "AUTH"]),
    program=st.from_regex(r"Mist[A-Za-z]{1,10}", fullmatch=True),
    pid=st.integers(1, 2**22),
    stream=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
    ),
    message=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=200
    ),
)
def test_machine_log_round_trip(
    kind: str, program: str, pid: int, stream: str, message: str
) -> None:
    line = format_machine(kind, program, pid, "x.py:12", stream, message)
    assert "\n" not in line
    rec = parse_machine(line + "\n", now=5.0)
    assert rec is not None
    assert (rec.kind, rec.program, rec.pid, rec.line, rec.stream, rec.message) == (
        kind,
        program,
        pid,
        "x.py:12",
        stream.replace("|", "_"),
        message,
    )
    assert rec.to_api() == [5, kind, message, stream.replace("|", "_"), pid, program, "x.py:12"]


@given(st.text(max_size=80))
def test_parse_machine_never_raises(text: str) -> None:
    rec = parse_machine(text)
    assert rec is None or rec.kind.isupper()


def test_choose_input() -> None:
    inputs = {
        "MP4": {"source_match": ["/*.mp4", "/*.mov", "http://*.mp4"], "priority": 9},
        "AV": {"source_match": ["/*"], "priority": 1},
        "Buffer": {"source_match": ["push://*"], "priority": 9},
        "TS": {"source_match": "/*.ts", "priority": 9},
        "RTSP": {"source_match": ["rtsp://*"], "priority": 9},
    }
    assert choose_input(inputs, "/v/a.mp4").name == "MP4"
    assert choose_input(inputs, "/v/a.mkv").name == "AV"
    assert choose_input(inputs, "push://").name == "Buffer"
    assert choose_input(inputs, "/x.ts").name == "TS"
    forced = choose_input(inputs, "ts:/v/a.bin")
    assert (forced.name, forced.source, forced.priority) == ("TS", "/v/a.bin", 99)
    rtsp = choose_input(inputs, "rtsp://cam/x")
    assert (rtsp.name, rtsp.source) == ("RTSP", "rtsp://cam/x")
    assert choose_input(inputs, "srt://nothing") is None
    assert choose_input({}, "/a.mp4") is None


def test_config_store_atomic_backup_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    store = ConfigStore(path)
    store.data["streams"]["a"] = {"source": "push://", "online": 1}
    store.data["config"]["protocols"] = [{"connector": "HTTP", "online": 1}]
    store.data["mystery"] = [1, {"error": "kept at top level? no, stripped below"}]
    store.save()
    first = json.loads(path.read_text())
    assert first["streams"]["a"] == {"source": "push://"}
    assert first["config"]["protocols"] == [{"connector": "HTTP"}]
    assert first["mystery"] == [1, {}]
    store.data["streams"]["b"] = {"source": "push://"}
    store.save()
    assert json.loads(path.with_name("c.json.bak").read_text()) == first
    # a temp file left by a dead writer is removed on load
    stale = tmp_path / ".c.json.tmp-999999999"
    stale.write_text("partial")
    loaded = ConfigStore(path).load()
    assert set(loaded["streams"]) == {"a", "b"} and not stale.exists()
    path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError, match=r"c\.json.*line 2, column 7"):
        ConfigStore(path).load()
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8 at byte 7"):
        ConfigStore(path).load()


def test_child_runtime_heartbeat_and_machine_log() -> None:
    """The dummy connector (common.runtime) under a fake controller address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(10)
        env = dict(os.environ, MIST_CHILD="1", MIST_CONTROL=f"127.0.0.1:{udp.getsockname()[1]}")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(DUMMY), "-p", str(port), "-i", "127.0.0.1", "-g", "4"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            beats = [json.loads(udp.recvfrom(2048)[0])["heartbeat"] for _ in range(2)]
            assert all(b["pid"] == proc.pid and b["program"] == "MistOutDummy" for b in beats)
            assert beats[1]["time"] > beats[0]["time"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        records = [parse_machine(line) for line in err.splitlines()]
        assert records and all(r is not None for r in records)
        assert [r.kind for r in records if r] == ["INFO", "INFO"]
        assert records[-1] is not None and "stopped: SIGTERM" in records[-1].message


def test_logbook_levels_colours_and_api_lines() -> None:
    import io

    from controller.logbook import Logbook

    out = io.StringIO()
    book = Logbook(debug=3, out=out, colour=True)
    book.child_line("WARN|MistOutX|12|a.py:3|live|careful\n", "MistOutX", 12, "")
    book.child_line("INFO|MistOutX|12|a.py:4|live|chatty\n", "MistOutX", 12, "")
    book.child_line("Traceback (most recent call last):\n", "MistOutX", 12, "live")
    book.child_line("plain text\n", "MistOutX", 12, "live")
    book.emit("AUTH", "login failed")
    text = out.getvalue()
    assert "\033[33mWARN\033[0m MistOutX[12] live: careful" in text
    assert "chatty" not in text  # INFO is above -g 3, still kept for the API
    assert "\033[31mERROR\033[0m MistOutX[12] live: Traceback" in text
    lines = book.api_lines()
    assert [line[1] for line in lines] == ["WARN", "INFO", "ERROR", "INFO", "AUTH"]
    assert lines[0][2:] == ["careful", "live", 12, "MistOutX", "a.py:3"]
    assert lines[-1][5] == "MistController" and lines[-1][6].startswith("test_units.py:")
    plain = io.StringIO()
    Logbook(debug=4, out=plain, colour=False).emit("WARN", "x")
    assert "\033[" not in plain.getvalue()


def test_stream_variables_in_sources() -> None:
    from controller.desired import substitute

    assert substitute("/media/$stream.mp4", "vod") == "/media/vod.mp4"
    assert substitute("/media/$basename/$wildcard.mp4", "vod+clip") == "/media/vod/clip.mp4"
    assert substitute("ts-exec:gen $pluswildcard", "x+y") == "ts-exec:gen +y"
    assert substitute("/media/", "folder+a.mp4") == "/media/a.mp4"
    assert substitute("/media/", "folder") == "/media/"
