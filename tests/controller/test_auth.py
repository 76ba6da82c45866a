"""MistServer's login handshake against the real controller, from a proxied client."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from controller.auth import Authenticator, RateLimiter, challenge_for, expected_password
from tests.controller.conftest import Mist, base_config

PROXIED = {"X-Forwarded-For": "203.0.113.9"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def mistserver_challenge(host: str) -> str:
    """Computed independently: md5hex("D-M-YYYY" + host), 0-based month, local time."""
    tm = time.localtime()
    return md5(f"{tm.tm_mday}-{tm.tm_mon - 1}-{tm.tm_year}{host}")


def with_account(user: str = "admin", password: str = "s3cret") -> dict:
    cfg = base_config(0)
    cfg["account"] = {user: {"password": md5(password)}}
    return cfg


@pytest.fixture(scope="module")
def shared(module_factory) -> Mist:
    """One controller with two accounts; fewer than 5 failed logins happen on it in total."""
    cfg = with_account()
    cfg["account"]["docs"] = {"password": md5("pass word")}
    return module_factory(cfg)


def test_challenge_formula_unit() -> None:
    when = time.mktime((2026, 1, 5, 12, 0, 0, 0, 0, -1))  # 5 January 2026
    assert challenge_for("1.2.3.4", when) == md5("5-0-20261.2.3.4")
    assert expected_password(md5("pw"), "abc") == md5(md5("pw") + "abc")


def test_rate_limiter_unit() -> None:
    auth = Authenticator({"a": {"password": md5("pw")}}, RateLimiter(max_failures=3, window_s=10))
    for i in range(3):
        res = auth.authorize(
            {"authorize": {"username": "a", "password": "bad"}}, "h", False, False, 100.0 + i
        )
        assert not res.authorized and "error" not in res.response
    good = expected_password(md5("pw"), challenge_for("h", 103.0))
    blocked = auth.authorize(
        {"authorize": {"username": "a", "password": good}}, "h", False, False, 103.0
    )
    assert not blocked.authorized and "retry" in blocked.response["error"]
    other_host = auth.authorize(
        {
            "authorize": {
                "username": "a",
                "password": expected_password(md5("pw"), challenge_for("k", 103.0)),
            }
        },
        "k",
        False,
        False,
        103.0,
    )
    assert other_host.authorized
    later = expected_password(md5("pw"), challenge_for("h", 111.0))
    assert auth.authorize(
        {"authorize": {"username": "a", "password": later}}, "h", False, False, 111.0
    ).authorized


def test_proxied_login_flow(shared: Mist) -> None:
    mist = shared
    first = mist.api({"streams": True}, headers=PROXIED)
    assert set(first) == {"authorize"}
    assert first["authorize"]["status"] == "CHALL"
    challenge = first["authorize"]["challenge"]
    assert challenge == mistserver_challenge("127.0.0.1")  # the connection's host, not the header
    wrong = mist.api(
        {"authorize": {"username": "admin", "password": md5(md5("nope") + challenge)}},
        headers=PROXIED,
    )
    assert wrong["authorize"]["status"] == "CHALL" and "streams" not in wrong
    no_user = mist.api(
        {"authorize": {"username": "ghost", "password": md5(md5("s3cret") + challenge)}},
        headers=PROXIED,
    )
    assert no_user["authorize"]["status"] == "CHALL"
    good = mist.api(
        {
            "authorize": {"username": "admin", "password": md5(md5("s3cret") + challenge)},
            "version": True,
        },
        headers=PROXIED,
    )
    assert good["authorize"]["status"] == "OK"
    assert good["version"]["release"] == "mistpy" and "streams" in good
    log = mist.api({"log": True}, "/api2")["log"]
    assert any(line[1] == "AUTH" and "admin" in line[2] for line in log)


def test_keepalive_connection_stays_authorized_until_logout(shared: Mist) -> None:
    mist = shared
    conn = http.client.HTTPConnection("127.0.0.1", mist.port, timeout=10)

    def call(obj: dict) -> dict:
        conn.request(
            "POST", "/api", json.dumps(obj), {"Content-Type": "application/json", **PROXIED}
        )
        return json.loads(conn.getresponse().read())

    challenge = call({})["authorize"]["challenge"]
    assert (
        call({"authorize": {"username": "admin", "password": md5(md5("s3cret") + challenge)}})[
            "authorize"
        ]["status"]
        == "OK"
    )
    assert "streams" in call({"version": True})  # same connection, no credentials
    out = call({"logout": True})
    assert out["authorize"]["status"] == "CHALL"
    assert set(call({"streams": True})) == {"authorize"}
    conn.close()
    # a fresh connection is not authorized
    assert set(mist.api({"streams": True}, headers=PROXIED)) == {"authorize"}


def test_noacc_then_account_creation(mist_factory) -> None:
    mist = mist_factory(base_config(0))
    assert mist.api({}, headers=PROXIED)["authorize"]["status"] == "NOACC"
    made = mist.api(
        {"authorize": {"new_username": "first", "new_password": "pw1"}}, headers=PROXIED
    )
    assert made["authorize"]["status"] == "ACC_MADE"
    on_disk = json.loads(mist.config.read_text())
    assert on_disk["account"] == {"first": {"password": md5("pw1")}}
    # now a challenge is required, and a second account cannot be made that way
    again = mist.api({"authorize": {"new_username": "evil", "new_password": "x"}}, headers=PROXIED)
    assert again["authorize"]["status"] == "CHALL"
    assert "evil" not in json.loads(mist.config.read_text())["account"]


def test_authorization_header_form(shared: Mist) -> None:
    mist = shared
    chall = mistserver_challenge("127.0.0.1")
    header = "json " + json.dumps({"username": "admin", "password": md5(md5("s3cret") + chall)})
    ok = mist.api({"version": True}, "/api2", headers={**PROXIED, "Authorization": header})
    assert ok["version"]["release"] == "mistpy"
    bad = "json " + json.dumps({"username": "admin", "password": "0" * 32})
    with pytest.raises(urllib.error.HTTPError) as err:
        mist.api({"version": True}, "/api2", headers={**PROXIED, "Authorization": bad})
    assert err.value.code == 403
    www = err.value.headers["WWW-Authenticate"]
    err.value.close()
    assert www.startswith("json ") and json.loads(www[5:])["challenge"] == chall


def test_failed_logins_are_rate_limited(mist_factory) -> None:
    mist = mist_factory(with_account())
    chall = mistserver_challenge("127.0.0.1")
    for _ in range(5):
        reply = mist.api(
            {"authorize": {"username": "admin", "password": "f" * 32}}, headers=PROXIED
        )
        assert reply["authorize"]["status"] == "CHALL"
    right = {"authorize": {"username": "admin", "password": md5(md5("s3cret") + chall)}}
    blocked = mist.api(right, headers=PROXIED)
    assert blocked["authorize"]["status"] == "CHALL" and "retry" in blocked["authorize"]["error"]
    # local clients are unaffected
    assert mist.api({"version": 1}, "/api2")["version"]


def test_documented_client_works_unchanged(shared: Mist) -> None:
    """A client written from MistServer's docs (urllib + hashlib) logs in and edits streams."""
    mist = shared
    script = Path(__file__).with_name("mist_api_client.py")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            f"http://127.0.0.1:{mist.port}",
            "docs",
            "pass word",
            "X-Forwarded-For:198.51.100.7",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert "docs_client_test" in result["listed"] and "live" in result["listed"]
    assert "docs_client_test" not in result["after"]
    # and refused with a wrong password
    bad = subprocess.run(
        [
            sys.executable,
            str(script),
            f"http://127.0.0.1:{mist.port}",
            "docs",
            "wrong",
            "X-Forwarded-For:198.51.100.7",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "PermissionError" in bad.stderr


def test_trusted_proxy_uses_the_forwarded_client(mist_factory) -> None:
    cfg = with_account()
    cfg["config"]["trustedproxy"] = ["127.0.0.0/8"]
    mist = mist_factory(cfg)
    reply = mist.api({}, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5"})
    assert reply["authorize"]["challenge"] == mistserver_challenge("203.0.113.5")
    chall = reply["authorize"]["challenge"]
    ok = mist.api(
        {"authorize": {"username": "admin", "password": md5(md5("s3cret") + chall)}, "version": 1},
        "/api2",
        headers={"X-Forwarded-For": "203.0.113.5"},
    )
    assert ok["authorize"]["status"] == "OK" and ok["version"]["release"] == "mistpy"
