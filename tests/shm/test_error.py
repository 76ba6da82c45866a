"""A failed input's reason on the bus: ``StreamWriter.set_error`` -> ``StreamMeta.error``,
the writer lingering until a reader has seen it, and the reason in ``/json_<s>.js``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from inputs.base import EXIT_INVALID
from shm import StreamReader, StreamWriter
from shm.cleanup import stream_page_names
from shm.model import StreamState, TrackMeta
from tests.inputs.support import InputProcess
from tests.outputs_http.conftest import start_server, stop_server


def test_error_reaches_readers_and_ends_the_linger(stream: str) -> None:
    with StreamWriter(stream, live=False) as w:
        w.add_track(TrackMeta(0, "video", "H264"))
        with StreamReader(stream) as r:
            assert r.meta.error == "" and not w.error_seen()
            w.set_error("cannot play x.mp4: no moov box")
            assert not w.error_seen()  # nobody has looked yet
            seen: list[bool] = []
            t = threading.Thread(target=lambda: seen.append(w.linger(30.0)))
            t.start()
            meta = r.meta
            t.join(20)
            assert not t.is_alive() and seen == [True]
            assert meta.state == StreamState.INVALID
            assert meta.error == "cannot play x.mp4: no moov box"
            assert w.error_seen()


def test_linger_gives_up_after_its_grace(stream: str) -> None:
    with StreamWriter(stream, live=False) as w:
        w.set_error("broken")
        t0 = time.monotonic()
        assert w.linger(0.2) is False
        assert time.monotonic() - t0 >= 0.2
        stop = threading.Event()
        stop.set()
        assert w.linger(30.0, stop) is False  # a stop request ends it at once


def test_error_of_a_dead_reader_does_not_count(stream: str) -> None:
    with StreamWriter(stream, live=False) as w:
        w.set_error("broken")
        r = StreamReader(stream)
        assert r.meta.error == "broken"
        r.close()  # its slot is released: nobody live has seen it any more
        assert not w.error_seen()


def test_corrupt_file_reason_in_json_info(tmp_path: Path, stream: str) -> None:
    """MistInMP4 on a .mp4 that is not media: /json_<s>.js on a real MistOutHTTP shows
    the input's reason, and the input exits (INVALID) once a viewer has seen it."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not an MP4 file at all\n" * 200)
    server = start_server()
    try:
        with InputProcess("mp4", stream, bad) as inp:
            deadline = time.monotonic() + 30
            body: dict[str, object] = {}
            while time.monotonic() < deadline:
                status, _h, raw = server.get(f"/json_{stream}.js")
                assert status == 200
                body = json.loads(raw)
                if "cannot" in str(body.get("error", "")):
                    break
                assert inp.proc.poll() is None, f"input exited unseen: {inp.stderr}"
                time.sleep(0.05)
            assert "cannot play" in str(body["error"]), body
            assert body["on_error"] == body["error"]
            assert "source" not in body and "meta" not in body
            assert inp.wait(20) == EXIT_INVALID
            assert str(body["error"]) in inp.stderr  # the same text as the ERROR line
            assert "Traceback" not in inp.stderr
        # the stream is gone now: the generic answer again
        status, _h, raw = server.get(f"/json_{stream}.js")
        assert status == 200 and json.loads(raw)["error"] == "Stream is offline"
    finally:
        stop_server(server)
    assert not stream_page_names(stream)
