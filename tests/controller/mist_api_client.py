"""A MistServer API client written from MistServer's API documentation only.

Standard library only (urllib + hashlib); it knows nothing about mistpy. It sends
every call as the ``command`` GET variable to ``/api``, includes the ``authorize``
member in each call (as the docs describe for stateless clients) and answers a
``CHALL`` with ``md5(md5(password) + challenge)``.

Usage: ``python mist_api_client.py http://host:4242 user password [header:value ...]``
prints the stream list after adding and deleting a test stream.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.parse
import urllib.request


class MistClient:
    def __init__(
        self, base: str, username: str, password: str, headers: dict | None = None
    ) -> None:
        self.base = base.rstrip("/")
        self.username = username
        self.password = password
        self.challenge = ""
        self.headers = headers or {}

    def _send(self, command: dict) -> dict:
        url = self.base + "/api?" + urllib.parse.urlencode({"command": json.dumps(command)})
        req = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    def _auth_member(self) -> dict:
        if not self.challenge:
            return {"username": self.username, "password": ""}
        inner = hashlib.md5(self.password.encode()).hexdigest()
        return {
            "username": self.username,
            "password": hashlib.md5((inner + self.challenge).encode()).hexdigest(),
        }

    def call(self, command: dict) -> dict:
        for _ in range(2):
            reply = self._send(dict(command, authorize=self._auth_member()))
            status = reply.get("authorize", {}).get("status")
            if status == "CHALL":
                if self.challenge == reply["authorize"]["challenge"]:
                    raise PermissionError("login refused")
                self.challenge = reply["authorize"]["challenge"]
                continue
            if status == "NOACC":
                raise PermissionError("server has no accounts")
            return reply
        raise PermissionError("login refused")


def main(argv: list[str]) -> int:
    base, user, password = argv[1:4]
    headers = dict(h.split(":", 1) for h in argv[4:])
    client = MistClient(base, user, password, headers)
    client.call({"addstream": {"docs_client_test": {"source": "push://"}}})
    listed = sorted(client.call({})["streams"])
    client.call({"deletestream": "docs_client_test"})
    after = sorted(client.call({})["streams"])
    print(json.dumps({"listed": listed, "after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
