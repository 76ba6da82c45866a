"""JWT viewer tokens: tokens signed by PyJWT (an independent implementation) checked by
``controller.jwt``, then through the real controller and MistOutHTTP with a USER_NEW
handler that denies everyone: only a valid JWT gets in, without asking USER_NEW."""

from __future__ import annotations

import http.server
import itertools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from controller import jwks_urls, jwt
from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import module_factory as module_factory
from tests.live.conftest import wait_for
from tests.outputs_http.media import decode
from tests.triggers.handlers import HttpHandler, serve_http

SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
OCT = {"kty": "oct", "kid": "hs", "k": pyjwt.utils.base64url_encode(SECRET).decode()}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
}


def _public_jwk(alg: str, kid: str) -> dict[str, Any]:
    if alg[:2] in ("RS", "PS"):
        found: dict[str, Any] = RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    else:
        found = ECAlgorithm.to_jwk(EC_KEYS[alg].public_key(), as_dict=True)
    return {**found, "kid": kid}


def _sign(alg: str, claims: dict[str, Any], kid: str | None = None) -> str:
    key: Any = SECRET if alg.startswith("HS") else RSA_KEY if alg[0] in "RP" else EC_KEYS[alg]
    headers = {"kid": kid} if kid else None
    return pyjwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.mark.parametrize(
    "alg",
    ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS512", "ES256", "ES384",
     "ES512"],
)  # fmt: skip
def test_signatures_from_pyjwt_verify(alg: str) -> None:
    jwk = OCT if alg.startswith("HS") else _public_jwk(alg, "pub")
    keys = [jwt.Key.from_entry(jwk)]
    assert keys[0] is not None
    token = _sign(alg, {"sub": "cam", "exp": int(time.time()) + 60})
    assert jwt.validate(token, [k for k in keys if k], "cam", "10.0.0.1")
    head, _, sig = token.split(".")
    forged = _sign(alg, {"sub": "cam2", "exp": int(time.time()) + 60}).split(".")[1]
    assert not jwt.validate(f"{head}.{forged}.{sig}", [k for k in keys if k], "cam2", "10.0.0.1")


def test_claims_permissions_and_key_choice() -> None:
    now = int(time.time())
    hs = jwt.Key.from_entry([OCT, {"stream": ["cam*"]}])
    rs = jwt.Key.from_entry([_public_jwk("RS256", "rs"), {"output": False}])
    assert hs is not None and rs is not None
    keys = [hs, rs]
    ok = _sign("HS256", {"sub": "cam1", "exp": now + 60}, kid="hs")
    assert jwt.validate(ok, keys, "cam1", "10.0.0.1")
    assert not jwt.validate(ok, keys, "other", "10.0.0.1")  # sub names another stream
    assert jwt.validate(_sign("HS256", {"sub": "cam"}), keys, "cam+anything", "::1")  # base
    assert not jwt.validate(_sign("HS256", {"sub": "tv"}), keys, "tv", "::1")  # key: cam* only
    assert not jwt.validate(_sign("HS256", {"exp": now - 5}), keys, "cam", "::1")
    assert not jwt.validate(_sign("HS256", {"nbf": now + 60}), keys, "cam", "::1")
    ipa = _sign("HS256", {"ipa": ["10.1.0.0/16", "192.0.2.7"]})
    assert jwt.validate(ipa, keys, "cam", "10.1.2.3")
    assert jwt.validate(ipa, keys, "cam", "::ffff:192.0.2.7")
    assert not jwt.validate(ipa, keys, "cam", "10.2.0.1")
    # the RSA key may not admit viewers (output false), whatever the signature
    assert not jwt.validate(_sign("RS256", {"sub": "cam"}, kid="rs"), keys, "cam", "::1")
    assert jwt.validate(_sign("RS256", {"sub": "cam"}), keys, "cam", "::1", perm="input")
    # a kid naming one key is checked against that key only
    assert not jwt.validate(_sign("HS256", {"sub": "cam"}, kid="rs"), keys, "cam", "::1")
    unsigned = pyjwt.encode({"sub": "cam"}, None, algorithm="none")
    assert not jwt.validate(unsigned + "x", keys, "cam", "::1")
    assert not jwt.validate(unsigned, keys, "cam", "::1")
    assert not jwt.validate("abc.def", keys, "cam", "::1")
    assert jwt.is_jws(ok) and not jwt.is_jws("plain-token")


def test_wildcards() -> None:
    assert jwt.wildcard_equal("live_1", "live_*")
    assert jwt.wildcard_equal("*", "x") and jwt.wildcard_equal("a*c", "abc")
    assert not jwt.wildcard_equal("live_1", "vod*")
    assert not jwt.wildcard_equal("abd", "a*c")


def test_jwks_documents_and_refresh_times() -> None:
    doc = json.dumps({"keys": [_public_jwk("ES256", "a"), {"kty": "nope"}, OCT]}).encode()
    keys = jwks_urls.parse_document(doc, {"stream": "cam"})
    assert [k.kid for k in keys] == ["a", "hs"]  # the unusable member is skipped
    assert all(k.streams == ("cam",) and k.output for k in keys)
    assert [k.kid for k in jwks_urls.parse_document(json.dumps(OCT).encode(), {})] == ["hs"]
    for bad in (b"<html>", b'{"keys": {}}', b'{"keys": []}', b"\xff"):
        with pytest.raises(ValueError):
            jwks_urls.parse_document(bad, {})
    assert jwks_urls.refresh_after("public, max-age=60") == 60
    assert jwks_urls.refresh_after('max-age="0"') == jwks_urls.MIN_REFRESH_S
    assert jwks_urls.refresh_after("max-age=9999999") == jwks_urls.MAX_REFRESH_S
    assert jwks_urls.refresh_after("no-cache") == jwks_urls.MIN_REFRESH_S
    assert jwks_urls.refresh_after(None) == jwks_urls.DEFAULT_REFRESH_S
    assert jwks_urls.url_entry(["https://idp/k", {"admin": True}]) == (
        "https://idp/k",
        {"admin": True},
    )
    assert jwks_urls.url_entry("http://idp/k") == ("http://idp/k", {})
    assert jwks_urls.url_entry("file:///etc/passwd") is None
    assert jwks_urls.url_entry([OCT, {}]) is None


# ---- through the real programs -------------------------------------------------------------


@pytest.fixture(scope="module")
def handler() -> Iterator[HttpHandler]:
    yield from serve_http()


@pytest.fixture(scope="module")
def mist(
    module_factory: Callable[..., Mist],
    handler: HttpHandler,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Mist, int, int]]:
    clip = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
         "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
         "-y", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    http, rtmp = free_port(), free_port()
    cfg = base_config(0, session_linger=1)
    cfg["config"]["protocols"] = [
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1"},
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1"},
    ]
    url = f"http://127.0.0.1:{handler.port}/hook"
    cfg["config"]["triggers"] = {"USER_NEW": [{"handler": url, "sync": True}]}
    cfg["streams"] = {"vod": {"name": "vod", "source": str(clip)}}
    handler.answers["USER_NEW"] = "false"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIST_PROGRAMS", "MistOutHTTP,MistOutRTMP,MistInMP4")
        m = module_factory(cfg, builtin=True)
    wait_for(lambda: m.protocol_online("HTTP") == [1], 60, "MistOutHTTP")
    wait_for(lambda: m.protocol_online("RTMP") == [1], 60, "MistOutRTMP")
    yield m, http, rtmp


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:  # the connector is still binding its port
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_valid_jwt_admits_without_user_new(
    mist: tuple[Mist, int, int], handler: HttpHandler, tmp_path: Path
) -> None:
    m, http, _ = mist
    added = m.api({"addjwks": [[OCT, {"stream": "vod"}], _public_jwk("ES256", "es")]})
    listed = m.api({"jwks": True})["jwks"]
    assert added["addjwks"] == listed and len(listed) == 2
    assert listed[0] == [OCT, {"input": True, "output": True, "admin": False, "stream": ["vod"]}]
    assert listed[1][1]["stream"] == ["*"]

    now = int(time.time())
    good = _sign("HS256", {"sub": "vod", "exp": now + 60}, kid="hs")
    status, body = _get(http, f"/vod.flv?jwt={good}")
    assert status == 200
    (tmp_path / "jwt.flv").write_bytes(body)
    assert decode(tmp_path / "jwt.flv").video_frames == 50
    es = _sign("ES256", {"exp": now + 60, "n": 2})
    status, body = _get(http, "/vod.flv", {"Authorization": f"Bearer {es}"})
    assert status == 200 and body[:3] == b"FLV"
    assert not handler.calls("USER_NEW")  # valid JWTs never asked

    expired = _sign("HS256", {"sub": "vod", "exp": now - 10}, kid="hs")
    assert _get(http, f"/vod.flv?jwt={expired}")[0] == 403
    wait_for(lambda: handler.calls("USER_NEW"), 30, "USER_NEW for the expired token")
    asked = handler.calls("USER_NEW")[0].body.split("\n")
    assert asked[:4] == ["vod", "127.0.0.1", expired, "HTTP"] and asked[6] == "false"

    # deleted keys no longer admit (a fresh token: a new session)
    m.api({"deletejwks": ["hs", "es"]})
    assert m.api({"jwks": True})["jwks"] == []
    again = _sign("HS256", {"sub": "vod", "exp": now + 60, "n": 3}, kid="hs")
    assert _get(http, f"/vod.flv?jwt={again}")[0] == 403


class _KeySetServer:
    """An identity provider's JWKS endpoint: answers what the test sets, counts fetches."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.fetches = 0
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.fetches += 1
                self.send_response(state.status)
                self.send_header("Cache-Control", "max-age=1")
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, *jwks: dict[str, Any]) -> None:
        self.status, self.body = 200, json.dumps({"keys": list(jwks)}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_jwks_url_keys_are_fetched_and_rotated(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    """A JWKS URL (with permissions) admits tokens signed by the provider's current keys,
    follows its rotation, keeps the last good keys while it fails, and stops with
    deletejwks. Every attempt signs a new token: a refused one is a denied session."""
    m, http, _ = mist
    idp = _KeySetServer()
    nonce = itertools.count(100)

    def status(alg: str, kid: str, stream: str = "vod") -> int:
        claims = {"exp": int(time.time()) + 60, "n": next(nonce)}
        return _get(http, f"/{stream}.flv?jwt={_sign(alg, claims, kid=kid)}")[0]

    try:
        idp.serve(_public_jwk("ES256", "idp1"))
        m.api({"addjwks": [idp.url, {"stream": "vod"}]})
        assert m.api({"jwks": True})["jwks"] == [[idp.url, {"stream": "vod"}]]
        wait_for(lambda: status("ES256", "idp1") == 200, 30, "a token of the fetched key")
        claims = {"exp": int(time.time()) + 60, "n": next(nonce)}
        code, body = _get(http, f"/vod.flv?jwt={_sign('ES256', claims, kid='idp1')}")
        assert code == 200
        (tmp_path / "idp.flv").write_bytes(body)
        assert decode(tmp_path / "idp.flv").video_frames == 50
        # the permissions of the entry hold for its keys: no other stream
        assert status("ES256", "idp1", stream="other") == 403

        idp.serve(_public_jwk("ES384", "idp2"))  # the provider rotates its key
        wait_for(lambda: status("ES384", "idp2") == 200, 30, "the rotated key")
        assert status("ES256", "idp1") == 403

        idp.status, idp.body = 500, b"oops"  # down: the last good keys stay
        kept = f"JWKS {idp.url}: answered HTTP 500; keeping its 1 earlier keys"
        wait_for(lambda: kept in json.dumps(m.api({"log": True})["log"]), 30, "a failed fetch")
        assert status("ES384", "idp2") == 200

        idp.serve(_public_jwk("ES384", "idp2"))
        m.api({"deletejwks": idp.url})
        assert m.api({"jwks": True})["jwks"] == []
        wait_for(lambda: status("ES384", "idp2") == 403, 30, "keys gone with the URL")
    finally:
        m.api({"jwks": []})
        idp.close()


def test_rtmp_viewers_present_jwts_too(mist: tuple[Mist, int, int], tmp_path: Path) -> None:
    """MistOutRTMP takes the token from ``?jwt=`` (and ``tkn``/``sid``/``sessId``) as the
    HTTP outputs do: a valid JWT plays without USER_NEW, a forged one is refused."""
    m, _, rtmp = mist
    m.api({"addjwks": [[OCT, {"stream": "vod"}]]})
    try:
        claims = {"sub": "vod", "exp": int(time.time()) + 60, "n": "rtmp"}
        good = _sign("HS256", claims, kid="hs")
        out = tmp_path / "rtmp.flv"
        played = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-rw_timeout", "15000000",
             "-i", f"rtmp://127.0.0.1:{rtmp}/play/vod?jwt={good}", "-c", "copy", "-y", str(out)],
            timeout=60, capture_output=True, text=True,
        )  # fmt: skip
        assert played.returncode == 0, played.stderr
        assert decode(out).video_frames == 50
        head, body, sig = good.split(".")
        forged = f"{head}.{body}.{sig[::-1]}"
        refused = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-rw_timeout", "15000000",
             "-i", f"rtmp://127.0.0.1:{rtmp}/play/vod?sid={forged}", "-c", "copy", "-y",
             str(tmp_path / "no.flv")],
            timeout=60, capture_output=True,
        )  # fmt: skip
        assert refused.returncode != 0
    finally:
        m.api({"jwks": []})
