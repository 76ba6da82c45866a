"""JSON Web Tokens as viewer credentials (MistServer's JWT access control, reference 3.3,
4 and 6.8). Sans-IO: the session table asks :func:`validate` with the configured keys.

Keys live in the top-level config list ``jwks``, one entry ``[jwk, perms]`` each (a bare
JWK object is accepted with the default permissions): ``perms = {input, output, admin,
stream}``, defaults ``input``/``output`` true, ``admin`` false, ``stream`` ``["*"]``
(patterns with at most one ``*``). A viewer's session token that looks like a JWS
(``header.payload.signature``, base64url) is valid when

* its signature verifies with a key of the right type -- the one named by the header's
  ``kid`` if that key exists, else any key -- for ``HS256/384/512`` (``oct``),
  ``RS256/384/512`` and ``PS256/384/512`` (``RSA``), ``ES256/384/512`` (``EC``);
  ``alg: none`` never is;
* that key has the ``output`` permission (viewers; pushes would need ``input``) and its
  stream patterns match the token's ``sub`` (else the stream);
* the claims hold: ``nbf`` <= now <= ``exp`` when present, ``sub`` matches the stream
  (wildcards, or the base name of a ``base+name`` stream), and ``ipa`` (an address,
  network or list of them) contains the viewer's address when present.

A valid token admits its session without USER_NEW (reference 7.2: "viewer, unless valid
JWT"); an invalid one is an ordinary token (USER_NEW, if configured, decides).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any

from common.streamname import base_name

DEFAULT_PERMS: dict[str, Any] = {"input": True, "output": True, "admin": False, "stream": ["*"]}
HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
KEY_TYPES = {"H": "oct", "R": "RSA", "P": "RSA", "E": "EC"}
CURVES = {"256": "P-256", "384": "P-384", "512": "P-521"}
B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@dataclass(frozen=True)
class Key:
    jwk: dict[str, Any]
    input: bool = True
    output: bool = True
    admin: bool = False
    streams: tuple[str, ...] = ("*",)
    raw_perms: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_entry(cls, entry: Any) -> Key | None:
        """``[jwk, perms]`` or a bare JWK object; None when it is not a usable JWK."""
        perms: Any = {}
        if isinstance(entry, list) and entry:
            jwk, perms = entry[0], entry[1] if len(entry) > 1 else {}
        else:
            jwk = entry
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("oct", "RSA", "EC"):
            return None
        perms = perms if isinstance(perms, dict) else {}

        def flag(name: str) -> bool:
            value = perms.get(name)
            return value if isinstance(value, bool) else bool(DEFAULT_PERMS[name])

        streams = perms.get("stream")
        if isinstance(streams, str):
            streams = [streams]
        patterns = (
            tuple(s for s in streams if isinstance(s, str)) if isinstance(streams, list) else ()
        )
        return cls(dict(jwk), flag("input"), flag("output"), flag("admin"), patterns or ("*",))

    @property
    def kid(self) -> str:
        kid = self.jwk.get("kid")
        return kid if isinstance(kid, str) else ""

    def to_entry(self) -> list[Any]:
        perms = {"input": self.input, "output": self.output, "admin": self.admin}
        return [self.jwk, {**perms, "stream": list(self.streams)}]

    def allows(self, stream: str, perm: str) -> bool:
        if not getattr(self, perm, False):
            return False
        return any(wildcard_equal(stream, pattern) for pattern in self.streams)


def wildcard_equal(a: str, b: str) -> bool:
    """Two strings, each with at most one ``*``, match (MistServer's key stream check)."""
    if a == "*" or b == "*":
        return True
    apos, bpos = a.find("*"), b.find("*")
    if apos < 0 and bpos < 0:
        return a == b
    pre = min(apos if apos >= 0 else len(a), bpos if bpos >= 0 else len(b))
    if a[:pre] != b[:pre]:
        return False
    suf = min(
        len(a) - apos - 1 if apos >= 0 else len(a), len(b) - bpos - 1 if bpos >= 0 else len(b)
    )
    return suf == 0 or a[len(a) - suf :] == b[len(b) - suf :]


def is_jws(token: str) -> bool:
    """Three base64url parts separated by dots."""
    parts = token.split(".")
    return len(parts) == 3 and all(p and B64URL.issuperset(p.encode()) for p in parts)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64_int(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("JWK member is not a string")
    return int.from_bytes(_b64(text), "big")


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, payload, signing input, signature); ValueError when malformed."""
    if not is_jws(token):
        raise ValueError("not a JWS compact serialisation")
    head, body, sig = token.split(".")
    try:
        header = json.loads(_b64(head))
        payload = json.loads(_b64(body))
        signature = _b64(sig)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable JWS: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("JWS header or payload is not a JSON object")
    return header, payload, f"{head}.{body}".encode(), signature


def verify(alg: str, jwk: dict[str, Any], message: bytes, signature: bytes) -> bool:
    """One signature check; False for unknown algorithms or unusable keys."""
    size = alg[2:]
    digest = HASHES.get(size)
    if digest is None or len(alg) != 5 or KEY_TYPES.get(alg[0]) != jwk.get("kty"):
        return False
    try:
        if alg.startswith("HS"):
            secret = _b64(str(jwk.get("k", "")))
            expected = hmac.new(secret, message, digest).digest()
            return bool(secret) and hmac.compare_digest(expected, signature)
        return _verify_public(alg, size, jwk, message, signature)
    except (ValueError, TypeError, binascii.Error):
        return False


def _verify_public(alg: str, size: str, jwk: dict[str, Any], message: bytes, sig: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    algo: hashes.HashAlgorithm = {
        "256": hashes.SHA256(),
        "384": hashes.SHA384(),
        "512": hashes.SHA512(),
    }[size]
    try:
        if alg[:2] in ("RS", "PS"):
            public = rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n")))
            key = public.public_key()
            pad = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(padding.MGF1(algo), padding.PSS.AUTO)
            )
            key.verify(sig, message, pad, algo)
            return True
        if alg.startswith("ES") and jwk.get("crv") == CURVES[size]:
            curve: ec.EllipticCurve = {
                "P-256": ec.SECP256R1(),
                "P-384": ec.SECP384R1(),
                "P-521": ec.SECP521R1(),
            }[CURVES[size]]
            point = ec.EllipticCurvePublicNumbers(
                _b64_int(jwk.get("x")), _b64_int(jwk.get("y")), curve
            )
            half = len(sig) // 2  # JWS: raw r || s, not DER
            der = utils.encode_dss_signature(
                int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big")
            )
            point.public_key().verify(der, message, ec.ECDSA(algo))
            return True
    except InvalidSignature:
        return False
    return False


def _ip_allowed(claim: Any, host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.removeprefix("::ffff:"))
    except ValueError:
        return False
    for item in claim if isinstance(claim, list) else [claim]:
        try:
            if isinstance(item, str) and addr in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def _stream_matches(claim: str, stream: str) -> bool:
    return wildcard_equal(stream, claim) or (claim == base_name(stream) and claim != stream)


def validate(
    token: str,
    keys: list[Key],
    stream: str,
    host: str,
    perm: str = "output",
    now: float | None = None,
) -> bool:
    """True when ``token`` is a valid JWT for ``perm`` on ``stream`` from ``host``."""
    if not keys or not is_jws(token):
        return False
    try:
        header, payload, message, signature = decode(token)
    except ValueError:
        return False
    alg = header.get("alg")
    if not isinstance(alg, str) or alg == "none":
        return False
    moment = time.time() if now is None else now
    for claim, late in (("nbf", False), ("exp", True)):
        value = payload.get(claim)
        if isinstance(value, (int, float)) and (moment > value if late else moment < value):
            return False
    sub = payload.get("sub")
    if sub is not None and (not isinstance(sub, str) or not _stream_matches(sub, stream)):
        return False
    if "ipa" in payload and not _ip_allowed(payload["ipa"], host):
        return False
    subject = sub if isinstance(sub, str) else stream
    kid = header.get("kid")
    named = [k for k in keys if kid and k.kid == kid]
    for key in named or keys:
        if key.allows(subject, perm) and verify(alg, key.jwk, message, signature):
            return True
    return False


def parse_keys(entries: Any) -> list[Key]:
    """The usable keys of the config's ``jwks`` list (JWKS URLs are left to
    :mod:`controller.jwks_urls`)."""
    if not isinstance(entries, list):
        return []
    return [k for k in (Key.from_entry(e) for e in entries) if k is not None]
