"""Real trigger handlers for the tests: a shell script and a threaded HTTP server.

The script records every call as one file ``<dir>/calls/<ns>-<pid>`` (argv[1], the
``MIST_*`` environment, then the payload from stdin) and answers with the content of
``<dir>/answer-<TRIGGER>`` (``true`` when absent), after sleeping ``<dir>/sleep-<TRIGGER>``
seconds when that file exists. The HTTP server records ``(headers, body)`` per request
and answers from :attr:`HttpHandler.answers` (per ``X-Trigger``; a string or a function
of the payload).
"""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = """#!/bin/sh
d="{dir}"
f="$d/calls/$(date +%s%N)-$$"
{{
  echo "$1"
  echo "MIST_TRIGGER=$MIST_TRIGGER"
  echo "MIST_TRIG_DEF=$MIST_TRIG_DEF"
  echo "MIST_PID=$MIST_PID"
  echo "MIST_INSTANCE=$MIST_INSTANCE"
  echo "MIST_NAME=$MIST_NAME"
  echo "MIST_TUUID=$MIST_TUUID"
  echo "MIST_TIME=$MIST_TIME"
  echo "MIST_DATE=$MIST_DATE"
  echo "--payload--"
  cat
}} > "$f.tmp"
mv "$f.tmp" "$f"
if [ -f "$d/sleep-$1" ]; then sleep "$(cat "$d/sleep-$1")"; fi
if [ -f "$d/answer-$1" ]; then cat "$d/answer-$1"; else echo true; fi
"""


@dataclass
class Call:
    trigger: str
    env: dict[str, str]
    payload: list[str]


class ScriptHandler:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (directory / "calls").mkdir(parents=True, exist_ok=True)
        self.path = directory / "handler.sh"
        self.path.write_text(SCRIPT.format(dir=directory))
        self.path.chmod(0o755)

    def answer(self, trigger: str, text: str) -> None:
        (self.dir / f"answer-{trigger}").write_text(text)

    def sleep(self, trigger: str, seconds: float) -> None:
        (self.dir / f"sleep-{trigger}").write_text(str(seconds))

    def calls(self, trigger: str | None = None) -> list[Call]:
        out = []
        for f in sorted((self.dir / "calls").iterdir()):
            if f.name.endswith(".tmp"):
                continue
            head, _, payload = f.read_text().partition("--payload--\n")
            lines = head.splitlines()
            env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
            call = Call(lines[0], env, payload.split("\n"))
            if trigger is None or call.trigger == trigger:
                out.append(call)
        return out


@dataclass
class HttpCall:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class HttpHandler:
    # per X-Trigger: a fixed answer or a function of the payload
    answers: dict[str, str | Callable[[str], str]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    received: list[HttpCall] = field(default_factory=list)
    port: int = 0

    def calls(self, trigger: str) -> list[HttpCall]:
        return [c for c in list(self.received) if c.headers.get("X-Trigger") == trigger]


def _request_handler(state: HttpHandler) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            trigger = self.headers.get("X-Trigger", "")
            state.received.append(HttpCall(self.path, dict(self.headers.items()), body))
            time.sleep(state.delays.get(trigger, 0))
            found = state.answers.get(trigger, "true")
            answer = (found(body) if callable(found) else found).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serve_http() -> Iterator[HttpHandler]:
    """Generator for a fixture: yields the running handler, stops it afterwards."""
    state = HttpHandler()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _request_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="trigger-http", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def encode_clip(path: Path, size: str, seconds: int) -> Path:
    """An H264 + AAC MP4 test clip made by the ffmpeg CLI (1 s keyframe interval)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-y", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path
