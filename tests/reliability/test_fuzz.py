"""Fuzzing of the parsers the codec fuzz tests do not reach: the HTTP request parser
(requests built from the grammar, then mutated and split anywhere), the controller's
JSON API (any JSON or bytes, over HTTP and UDP, against the real controller) and the
config file loader (mutated and truncated files). Only our error types may escape the
pure parsers; the controller must always answer JSON and keep running; a bad config
file must give a clear error and never be overwritten.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config_store import ConfigError, ConfigStore
from outputs.http.parser import HttpError, Limits, RequestParser
from tests.controller.conftest import CONTROLLER, Mist, base_config, free_port

pytestmark = pytest.mark.reliability
LONG = os.environ.get("MIST_RELIABILITY_LONG") == "1"
EXAMPLES = 2000 if LONG else 150

# -- HTTP request parser ---------------------------------------------------------------

TOKEN = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
PATH = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=60).map(
    lambda s: "/" + s
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str, str, dict[str, str], bytes]:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"]))
    path = draw(PATH)
    headers = draw(st.dictionaries(TOKEN.map(str.lower), LATIN1.map(str.strip), max_size=8))
    headers.pop("content-length", None)
    headers.pop("transfer-encoding", None)
    body = draw(st.binary(max_size=50))
    if body:
        headers["content-length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body, method, path, headers, body


def feed_all(data: bytes, cuts: list[int]) -> list[object]:
    p = RequestParser(Limits(max_line=300, max_header_bytes=600, max_body=100))
    out: list[object] = []
    pos = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out += p.feed(data[pos:cut])
        # what stays buffered is bounded by the limits (plus the piece just fed)
        assert p.pending <= 600 + 100 + (cut - pos)
        pos = cut
    return out


@settings(max_examples=EXAMPLES, deadline=None)
@given(requests(), st.lists(st.integers(0, 800), max_size=6))
def test_http_parser_round_trip_split_anywhere(req: tuple, cuts: list[int]) -> None:
    data, method, path, headers, body = req
    try:
        got = feed_all(data * 2, cuts)  # two pipelined copies
    except HttpError as exc:
        assert 400 <= exc.status < 600
        return
    assert len(got) == 2
    for r in got:
        assert (r.method, r.target, r.body) == (method, path, body)  # type: ignore[attr-defined]
        assert r.headers == headers  # type: ignore[attr-defined]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    requests(),
    st.lists(
        st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=4)), min_size=1, max_size=6
    ),
    st.lists(st.integers(0, 800), max_size=6),
)
def test_http_parser_mutated_only_http_errors(
    req: tuple, edits: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = bytearray(req[0])
    for at, new in edits:  # replace a few bytes anywhere (truncation, junk, CR/LF games)
        at = min(at, len(data))
        data[at : at + len(new) or at + 1] = new
    try:
        feed_all(bytes(data), cuts)
    except HttpError as exc:
        assert 400 <= exc.status < 600


def test_http_parser_content_length_superscript_digit() -> None:
    with pytest.raises(HttpError):
        RequestParser().feed(b"GET / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n")


# -- the controller's JSON API -----------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
COMMANDS = ["streams", "config", "addstream", "deletestream", "addprotocol", "deleteprotocol",
            "updateprotocol", "capabilities", "browse", "ui_settings", "active_streams", "log",
            "authorize", "minimal", "config_backup", "push_list", "stats", "totals", "clients"]  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mist]:
    tmp = tmp_path_factory.mktemp("fuzzapi")
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(base_config(0)))
    env = dict(os.environ, MIST_NO_BUILTIN="1", MIST_PROGRAM_PATH=str(tmp))
    env.pop("MIST_CONTROL", None)
    env.pop("MIST_CHILD", None)
    mist = Mist(tmp, free_port(), cfg, env, [])
    mist.start()
    try:
        yield mist
    finally:
        assert mist.stop() == 0, mist.stderr()[-2000:]
        assert "Traceback" not in mist.stderr(), mist.stderr()[-4000:]


def _http(port: int, path: str, body: bytes | None, ctype: str = "application/json") -> bytes:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": ctype}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def _answers_json(raw: bytes) -> object:
    text = raw.decode()
    value = json.loads(text)  # JSON, then at most the blank line MistServer adds
    assert isinstance(value, dict), text[:200]
    return value


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        JSON,
        st.dictionaries(st.sampled_from(COMMANDS), JSON, min_size=1, max_size=4),
    ),
    st.sampled_from(["/api", "/api2"]),
)
def test_api_any_json_gets_a_json_answer(api: Mist, body: object, path: str) -> None:
    reply = _answers_json(_http(api.port, path, json.dumps(body).encode()))
    assert isinstance(reply, dict)
    err = reply.get("error")
    assert err is None or (isinstance(err, str) and "internal" not in err.lower()), err


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=300))
def test_api_bytes_and_udp_get_answers(api: Mist, raw: bytes) -> None:
    _answers_json(_http(api.port, "/api2", raw))
    query = urllib.parse.quote_from_bytes(raw)
    _answers_json(_http(api.port, f"/api2?command={query}", None))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(raw, ("127.0.0.1", api.port))  # no reply expected for garbage
    assert api.proc is not None and api.proc.poll() is None
    assert _answers_json(_http(api.port, "/api2", b'{"version": 1}'))


# -- the config file loader --------------------------------------------------------------

VALID = json.dumps(
    {**base_config(0), "streams": {"a": {"name": "a", "source": "push://"}},
     "account": {"u": {"password": "0" * 32}}}, indent=1,
)  # fmt: skip


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.integers(0, len(VALID)),
    st.lists(st.tuples(st.integers(0, len(VALID)), st.text(max_size=3)), max_size=4),
)
def test_config_loader_truncated_or_mutated(
    tmp_path: Path, cut: int, edits: list[tuple[int, str]]
) -> None:
    text = VALID[:cut]
    for at, new in edits:
        text = text[:at] + new + text[at + 1 :]
    path = tmp_path / "config.json"
    raw = text.encode("utf-8", "surrogatepass")
    path.write_bytes(raw)
    store = ConfigStore(path)
    try:
        data = store.load()
    except ConfigError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(data, dict) and isinstance(data["streams"], dict)
    assert path.read_bytes() == raw  # never rewritten by loading
    assert not store.backup_path.exists()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=200))
def test_config_loader_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(raw)
    try:
        ConfigStore(path).load()
    except ConfigError as exc:
        assert str(path) in str(exc)
    assert path.read_bytes() == raw


def test_controller_refuses_a_truncated_config_and_keeps_it(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "config.json"
    raw = VALID[: len(VALID) // 2].encode()
    path.write_bytes(raw)
    env = dict(os.environ, MIST_NO_BUILTIN="1")
    res = subprocess.run(
        [*CONTROLLER, "-c", str(path), "-p", str(free_port()), "-i", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert str(path) in res.stderr and "line" in res.stderr
    assert path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
