"""MistServer's API login handshake (reference 3.2), without any I/O.

* Local, non-proxied clients are trusted (``authorize.local``).
* Everyone else gets ``CHALL`` with challenge ``md5hex("D-M-YYYY" + host)`` (day of the
  month, 0-based month, local time, the connection's peer host) and must send
  ``{"authorize": {"username": U, "password": md5hex(md5hex(pw) + challenge)}}``.
* No accounts yet: ``NOACC``; ``new_username``/``new_password`` then create the first
  one (``ACC_MADE``, and the connection is authorized).
* Repeated failures from one host are rate limited: after :data:`MAX_FAILURES` within
  :data:`FAILURE_WINDOW_S`, further attempts from that host are refused unchecked
  until the window has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0


def md5hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def challenge_for(host: str, now: float | None = None) -> str:
    """``md5hex("D-M-YYYY" + host)`` with a 0-based month, local time."""
    tm = time.localtime(time.time() if now is None else now)
    return md5hex(f"{tm.tm_mday}-{tm.tm_mon - 1}-{tm.tm_year}{host}")


def expected_password(stored_md5: str, challenge: str) -> str:
    """What a client must send for an account whose stored password is ``stored_md5``."""
    return md5hex(stored_md5.lower() + challenge)


@dataclass
class RateLimiter:
    """Failed-login bookkeeping per host; ``now`` is always passed in."""

    max_failures: int = MAX_FAILURES
    window_s: float = FAILURE_WINDOW_S
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, host: str, now: float) -> float:
        """Seconds the host must still wait (0 when it may try)."""
        q = self._failures.get(host)
        if not q:
            return 0.0
        while q and now - q[0] > self.window_s:
            q.popleft()
        if len(q) < self.max_failures:
            return 0.0
        return max(0.0, self.window_s - (now - q[0]))

    def failed(self, host: str, now: float) -> None:
        self._failures.setdefault(host, deque()).append(now)

    def succeeded(self, host: str) -> None:
        self._failures.pop(host, None)


@dataclass
class AuthResult:
    authorized: bool
    response: dict[str, Any]  # the "authorize" member of the reply (may be empty)
    log: str = ""  # an AUTH log line to record, if any


class Authenticator:
    """Decides whether one API request is authorized; keeps the account table in ``accounts``."""

    def __init__(self, accounts: dict[str, Any], limiter: RateLimiter | None = None) -> None:
        self.accounts = accounts
        self.limiter = limiter or RateLimiter()

    def check_credentials(self, username: str, password: str, host: str, now: float) -> bool:
        account = self.accounts.get(username)
        if not isinstance(account, dict) or not isinstance(account.get("password"), str):
            return False
        want = expected_password(account["password"], challenge_for(host, now))
        return hmac.compare_digest(want, password.lower())

    def authorize(
        self, request: dict[str, Any], host: str, already: bool, local: bool, now: float
    ) -> AuthResult:
        """Apply the handshake to ``request`` from ``host``.

        ``already``: the connection was authorized before; ``local``: it is a trusted
        local, non-proxied connection.
        """
        if local:
            return AuthResult(True, {"status": "OK", "local": True})
        auth = request.get("authorize")
        auth = auth if isinstance(auth, dict) else {}
        if already and not auth.get("password"):
            return AuthResult(True, {"status": "OK"} if "authorize" in request else {})
        chall = challenge_for(host, now)
        if not self.accounts:
            user, pw = auth.get("new_username"), auth.get("new_password")
            if isinstance(user, str) and user and isinstance(pw, str) and pw:
                self.accounts[user] = {"password": md5hex(pw)}
                return AuthResult(True, {"status": "ACC_MADE"}, f"Account {user} created")
            return AuthResult(False, {"status": "NOACC"})
        user, pw = auth.get("username"), auth.get("password")
        if isinstance(user, str) and isinstance(pw, str) and pw:
            wait = self.limiter.blocked(host, now)
            if wait > 0:
                return AuthResult(
                    False,
                    {
                        "status": "CHALL",
                        "challenge": chall,
                        "error": f"Too many failed logins; retry in {int(wait) + 1} s",
                    },
                    f"Login attempt for {user} from {host} refused: rate limited",
                )
            if self.check_credentials(user, pw, host, now):
                self.limiter.succeeded(host)
                return AuthResult(True, {"status": "OK"})
            self.limiter.failed(host, now)
            return AuthResult(
                False,
                {"status": "CHALL", "challenge": chall},
                f"Failed login attempt {user} from {host}",
            )
        return AuthResult(False, {"status": "CHALL", "challenge": chall})
