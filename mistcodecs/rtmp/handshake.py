"""RTMP handshake, plain and digest ("complex", Flash Player 9+) for both roles.

Plain: C0/S0 is the version byte 3; C1/S1 are 1536 bytes (time, zero, random); C2/S2
echo the peer's C1/S1. Digest: C1/S1 carry a version in bytes 4..7 and an HMAC-SHA256
digest hidden at an offset derived from four bytes of the packet (two layouts,
"scheme 0" at 8..11 and "scheme 1" at 772..775). S2/C2 end in an HMAC keyed by a hash
of the peer's digest, so each side proves it saw the other's packet. FFmpeg, librtmp
(OBS) and Flash check these digests, so a server must answer them correctly.

Both classes are sans-IO: ``receive(data) -> bytes consumed`` plus ``output`` to send,
``done`` once complete, leftover bytes kept in ``rest`` for the chunk layer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from mistcodecs.errors import FormatError

SIZE = 1536
DIGEST_SIZE = 32
RTMP_VERSION = 3

_FP_KEY = b"Genuine Adobe Flash Player 001"
_FMS_KEY = b"Genuine Adobe Flash Media Server 001"
_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
_FP_KEY_FULL = _FP_KEY + _KEY_TAIL
_FMS_KEY_FULL = _FMS_KEY + _KEY_TAIL

CLIENT_VERSION = bytes((9, 0, 124, 2))  # what FFmpeg announces
SERVER_VERSION = bytes((4, 0, 5, 1))
_TIME = struct.Struct(">I")


class HandshakeError(FormatError):
    """The peer's handshake is malformed."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes, scheme: int) -> int:
    """Where the 32-byte digest sits in a C1/S1 for a scheme (0 or 1)."""
    base = 8 if scheme == 0 else 772
    return sum(packet[base : base + 4]) % 728 + base + 4


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """(scheme, digest) if ``packet`` carries a valid digest under ``key``."""
    for scheme in (0, 1):
        off = digest_offset(packet, scheme)
        expected = _hmac(key, packet[:off] + packet[off + DIGEST_SIZE :])
        if hmac.compare_digest(expected, packet[off : off + DIGEST_SIZE]):
            return scheme, expected
    return None


def make_digest_packet(
    version: bytes, key: bytes, scheme: int = 0, timestamp: int = 0
) -> tuple[bytes, bytes]:
    """A C1/S1 with an embedded digest; returns (packet, digest)."""
    body = bytearray(_TIME.pack(timestamp) + version + os.urandom(SIZE - 8))
    off = digest_offset(bytes(body), scheme)
    digest = _hmac(key, bytes(body[:off] + body[off + DIGEST_SIZE :]))
    body[off : off + DIGEST_SIZE] = digest
    return bytes(body), digest


def make_response(peer_digest: bytes, key_full: bytes) -> bytes:
    """S2/C2 of the digest handshake: random bytes signed with a key from the peer's digest."""
    rand = os.urandom(SIZE - DIGEST_SIZE)
    return rand + _hmac(_hmac(key_full, peer_digest), rand)


def check_response(packet: bytes, own_digest: bytes, key_full: bytes) -> bool:
    sig = _hmac(_hmac(key_full, own_digest), packet[: SIZE - DIGEST_SIZE])
    return hmac.compare_digest(sig, packet[SIZE - DIGEST_SIZE :])


class ServerHandshake:
    """Reads C0+C1, answers S0+S1+S2, then waits for C2."""

    def __init__(self, timestamp: int = 0) -> None:
        self._buf = bytearray()
        self._timestamp = timestamp
        self.output = bytearray()
        self.done = False
        self.complex = False  # True when the client used (valid) digests
        self.client_version = b""
        self.rest = b""
        self._state = 0  # 0: want C0C1, 1: want C2

    def receive(self, data: bytes) -> None:
        if self.done:
            self.rest += data
            return
        self._buf += data
        if self._state == 0 and len(self._buf) >= 1 + SIZE:
            if self._buf[0] not in (
                3,
                6,
            ):  # 6 = RTMPE, answered unencrypted (clients then fail clearly)
                raise HandshakeError(f"RTMP handshake: unsupported version byte {self._buf[0]}")
            c1 = bytes(self._buf[1 : 1 + SIZE])
            del self._buf[: 1 + SIZE]
            self.client_version = c1[4:8]
            self.output += bytes((RTMP_VERSION,)) + self._answer(c1)
            self._state = 1
        if self._state == 1 and len(self._buf) >= SIZE:
            # C2 is not verified: librtmp and FFmpeg send echoes or signatures inconsistently.
            del self._buf[:SIZE]
            self.done = True
            self.rest = bytes(self._buf)
            self._buf.clear()

    def _answer(self, c1: bytes) -> bytes:
        found = find_digest(c1, _FP_KEY) if c1[4:8] != b"\0\0\0\0" else None
        if found is None:
            s1 = _TIME.pack(self._timestamp) + b"\0\0\0\0" + os.urandom(SIZE - 8)
            return s1 + c1  # plain: S2 echoes C1
        self.complex = True
        scheme, client_digest = found
        s1, _ = make_digest_packet(SERVER_VERSION, _FMS_KEY, scheme, self._timestamp)
        return s1 + make_response(client_digest, _FMS_KEY_FULL)


class ClientHandshake:
    """Sends C0+C1 (digest form unless ``plain``), reads S0+S1+S2, answers C2."""

    def __init__(self, plain: bool = False, timestamp: int = 0) -> None:
        self._buf = bytearray()
        self.done = False
        self.rest = b""
        self.server_complex = False
        self.server_verified = False  # S1 and S2 digests both checked
        if plain:
            self._c1 = _TIME.pack(timestamp) + b"\0\0\0\0" + os.urandom(SIZE - 8)
            self._digest = b""
        else:
            self._c1, self._digest = make_digest_packet(CLIENT_VERSION, _FP_KEY, 0, timestamp)
        self.output = bytearray(bytes((RTMP_VERSION,)) + self._c1)

    @property
    def complex(self) -> bool:
        return self.server_complex

    def receive(self, data: bytes) -> None:
        if self.done:
            self.rest += data
            return
        self._buf += data
        if len(self._buf) < 1 + 2 * SIZE:
            return
        if self._buf[0] != RTMP_VERSION:
            raise HandshakeError(f"RTMP handshake: server answered version byte {self._buf[0]}")
        s1 = bytes(self._buf[1 : 1 + SIZE])
        s2 = bytes(self._buf[1 + SIZE : 1 + 2 * SIZE])
        self.rest = bytes(self._buf[1 + 2 * SIZE :])
        self._buf.clear()
        found = find_digest(s1, _FMS_KEY) if self._digest and s1[4:8] != b"\0\0\0\0" else None
        if found is None:
            self.output += s1  # plain: echo S1
        else:
            self.server_complex = True
            self.server_verified = check_response(s2, self._digest, _FMS_KEY_FULL) or s2 == self._c1
            self.output += make_response(found[1], _FP_KEY_FULL)
        self.done = True
