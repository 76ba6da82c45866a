"""TriggerService with real handlers (shell script, HTTP server), in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.triggers import is_true
from controller import triggers as trig
from controller.triggers import Handler, TriggerService, combine, parse_config, stream_matches
from tests.triggers.handlers import HttpHandler, ScriptHandler, serve_http


@pytest.fixture
def http_handler() -> Iterator[HttpHandler]:
    yield from serve_http()


def make_service(config: dict[str, Any], tags: dict[str, list[str]] | None = None):
    logs: list[tuple[str, str]] = []
    service = TriggerService(
        lambda: config,
        lambda s: (tags or {}).get(s, []),
        lambda: ("iid123", "testserver"),
        lambda kind, msg, *a: logs.append((kind, msg)),
    )
    return service, logs


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("true", True),
        ("  TRUE\n", True),
        ("1", True),
        ("yes please", True),
        ("continue", True),
        ("Cont", True),
        ("false", False),
        ("0", False),
        ("", False),
        ("no", False),
        ("tru", False),
        (None, False),
    ],
)
def test_truthiness(answer: str | None, expected: bool) -> None:
    assert is_true(answer) is expected


@pytest.mark.parametrize(
    ("filters", "stream", "tags", "expected"),
    [
        ((), "any", [], True),
        (("live",), "live", [], True),
        (("live",), "live+cam1", [], True),
        (("live",), "live cam1", [], True),
        (("live+cam1",), "live+cam1", [], True),
        (("live+cam1",), "live+cam2", [], False),
        (("live",), "vod", [], False),
        (("!live",), "live", [], False),
        (("!live",), "vod", [], True),
        (("!live", "!vod"), "other", [], True),
        (("!live", "vod"), "other", [], False),
        (("#sports",), "match", ["sports"], True),
        (("#sports",), "match", ["news"], False),
        (("!#private",), "x", ["private"], False),
        (("live", "!live+secret"), "live+secret", [], True),  # first hit decides
    ],
)
def test_stream_filter(
    filters: tuple[str, ...], stream: str, tags: list[str], expected: bool
) -> None:
    assert stream_matches(filters, stream, tags) is expected


def test_config_forms() -> None:
    parsed = parse_config(
        {
            "USER_NEW": [{"handler": "/bin/a", "sync": True, "streams": ["x"], "default": "no"}],
            "CONN_OPEN": [["http://h/", 1, ["a", "b"]]],
            "STREAM_END": ["http://legacy/", 0, []],
            "STREAM_ADD": "/bin/bare",
            "BROKEN": [{"sync": True}, 42],
        }
    )
    assert parsed["USER_NEW"] == [Handler("/bin/a", True, ("x",), "", "no")]
    assert parsed["CONN_OPEN"] == [Handler("http://h/", True, ("a", "b"))]
    assert parsed["STREAM_END"] == [Handler("http://legacy/", False, ())]
    assert parsed["STREAM_ADD"] == [Handler("/bin/bare")]
    assert "BROKEN" not in parsed


def test_combine_rules() -> None:
    assert not combine([]).configured
    out = combine([("true", True), ("false", True), ("yes", True)])
    assert (out.allow, out.answer) == (False, "yes")
    out = combine([("first", True), ("true", False), ("second", True)])
    assert out.blocking and out.answer == "second" and not out.allow  # rewrite: last blocking
    out = combine([("true", False)])
    assert out.allow and not out.blocking and out.answer == "true"


async def test_exec_handler_payload_env_answer(tmp_path: Path) -> None:
    script = ScriptHandler(tmp_path)
    script.answer("PLAY_REWRITE", "other_stream\n")
    service, _ = make_service({"PLAY_REWRITE": [{"handler": str(script.path), "sync": True}]})
    lines = ["live", "127.0.0.1", "HTTP", "http://x/live.flv?a=b"]
    outcome = await service.fire("PLAY_REWRITE", lines, "live")
    assert outcome.configured and outcome.blocking
    assert outcome.answer == "other_stream"  # surrounding white space stripped
    (call,) = script.calls("PLAY_REWRITE")
    assert call.payload == lines  # lines joined by \n, no trailing newline
    assert call.env["MIST_TRIGGER"] == "PLAY_REWRITE"
    assert call.env["MIST_TRIG_DEF"] == "true"
    assert call.env["MIST_INSTANCE"] == "iid123"
    assert call.env["MIST_NAME"] == "testserver"
    assert len(call.env["MIST_TUUID"]) == 36
    assert abs(int(call.env["MIST_TIME"]) - time.time()) < 10
    assert call.env["MIST_DATE"].endswith("GMT")
    assert service.stats_view()["PLAY_REWRITE"]["count"] == 1
    await service.close()


async def test_http_handler_headers(tmp_path: Path, http_handler: HttpHandler) -> None:
    http_handler.answers["USER_NEW"] = "false"
    url = f"http://127.0.0.1:{http_handler.port}/hook"
    service, _ = make_service({"USER_NEW": [{"handler": url, "sync": True}]})
    outcome = await service.fire("USER_NEW", ["a", "b", "c"], "a")
    assert not outcome.allow and outcome.answer == "false"
    (call,) = http_handler.calls("USER_NEW")
    assert call.path == "/hook"
    assert call.body == "a\nb\nc"
    for header in ("X-Trigger-UUID", "X-Trigger-UnixMillis", "Date", "X-PID"):
        assert call.headers[header]
    assert call.headers["X-Instance"] == "iid123"
    assert call.headers["X-Name"] == "testserver"
    assert call.headers["Content-Type"] == "text/plain"
    await service.close()


async def test_async_handler_uses_default_without_waiting(tmp_path: Path) -> None:
    script = ScriptHandler(tmp_path)
    script.sleep("CONN_OPEN", 3)
    script.answer("CONN_OPEN", "false")
    service, _ = make_service(
        {"CONN_OPEN": [{"handler": str(script.path), "sync": False, "default": "yes"}]}
    )
    started = time.monotonic()
    outcome = await service.fire("CONN_OPEN", ["s", "h", "HTTP", "u"], "s")
    assert time.monotonic() - started < 1.0
    assert outcome.allow and outcome.answer == "yes" and not outcome.blocking
    await service.close()


async def test_hanging_handler_times_out_into_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trig, "TERM_AFTER_S", 0.5)
    monkeypatch.setattr(trig, "KILL_AFTER_S", 0.8)
    monkeypatch.setattr(trig, "HARD_LIMIT_S", 1.0)
    script = ScriptHandler(tmp_path)
    script.sleep("USER_NEW", 30)
    service, logs = make_service(
        {
            "USER_NEW": [{"handler": str(script.path), "sync": True, "default": "false"}],
            "CONN_OPEN": [{"handler": str(script.path), "sync": True}],
        }
    )
    hanging = asyncio.create_task(service.fire("USER_NEW", ["s"], "s"))
    started = time.monotonic()
    other = await service.fire("CONN_OPEN", ["s"], "s")  # not stalled by the hanging one
    assert other.allow and time.monotonic() - started < 0.5
    outcome = await hanging
    assert not outcome.allow and outcome.answer == "false"
    assert service.stats_view()["USER_NEW"]["fails"] == 1
    assert any("still running" in msg for _, msg in logs)
    await service.close()


async def test_multiple_handlers_and_filters(tmp_path: Path, http_handler: HttpHandler) -> None:
    script = ScriptHandler(tmp_path)
    url = f"http://127.0.0.1:{http_handler.port}/"
    http_handler.answers["CONN_PLAY"] = "false"
    service, _ = make_service(
        {
            "CONN_PLAY": [
                {"handler": str(script.path), "sync": True, "streams": ["live"]},
                {"handler": url, "sync": True, "streams": ["#blocked"]},
            ]
        },
        tags={"news": ["blocked"]},
    )
    assert (await service.fire("CONN_PLAY", ["live+a"], "live+a")).allow
    assert not (await service.fire("CONN_PLAY", ["news"], "news")).allow
    assert not (await service.fire("CONN_PLAY", ["vod"], "vod")).configured
    assert len(script.calls("CONN_PLAY")) == 1 and len(http_handler.calls("CONN_PLAY")) == 1
    await service.close()


async def test_missing_executable_and_dead_url_count_as_failures(tmp_path: Path) -> None:
    service, _ = make_service(
        {
            "STREAM_LOAD": [
                {"handler": str(tmp_path / "nope"), "sync": True},
                {"handler": "http://127.0.0.1:9/", "sync": True, "default": "true"},
            ]
        }
    )
    outcome = await service.fire("STREAM_LOAD", ["s"], "s")
    assert outcome.allow  # both fell back to the default "true"
    assert service.stats_view()["STREAM_LOAD"] == {
        "count": 2,
        "ms": service.stats["STREAM_LOAD"].ms,
        "fails": 2,
    }
    await service.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
@settings(max_examples=100, deadline=None)
def test_any_trigger_config_parses_without_errors(raw: Any) -> None:
    parsed = parse_config({"USER_NEW": raw, "X": raw} if not isinstance(raw, dict) else raw)
    for handlers in parsed.values():
        assert handlers and all(isinstance(h, Handler) and h.handler for h in handlers)


async def test_live_bandwidth_threshold_params(tmp_path: Path) -> None:
    script = ScriptHandler(tmp_path)
    script.answer("LIVE_BANDWIDTH", "false")
    service, _ = make_service(
        {"LIVE_BANDWIDTH": [{"handler": str(script.path), "sync": True, "params": "100000"}]}
    )
    assert not (await service.fire("LIVE_BANDWIDTH", ["s", "5000"], "s")).configured
    outcome = await service.fire("LIVE_BANDWIDTH", ["s", "250000"], "s")
    assert outcome.configured and not outcome.allow
    assert [c.payload for c in script.calls("LIVE_BANDWIDTH")] == [["s", "250000"]]
    await service.close()
