"""Independent clients run as subprocesses (PyAV holds the GIL during network I/O).

python -m tests.live.clients read URL OUT SECONDS [FORMAT]   copy N s of a stream to OUT
python -m tests.live.clients push SRC URL                    publish SRC paced (flv)
"""

from __future__ import annotations

import sys
import time

import av


def read(url: str, out: str, seconds: float, fmt: str | None = None) -> None:
    with (
        av.open(url, options={"rw_timeout": "15000000"}, format=fmt) as inp,
        av.open(out, "w") as o,
    ):
        streams = {
            s.index: o.add_stream_from_template(s)
            for s in inp.streams
            if s.type in ("video", "audio")
        }
        start = time.monotonic()
        for packet in inp.demux():
            if packet.dts is None or packet.stream.index not in streams:
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
            if time.monotonic() - start > seconds:
                break


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(
            sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None
        )
    else:
        from tests.codecs_rtmp.pyav_rtmp import remux

        remux(sys.argv[2], sys.argv[3], paced=True, dst_format="flv")
