"""PyAV (FFmpeg 8, enhanced RTMP) as an RTMP peer, run as a subprocess by the tests
(PyAV keeps the GIL during network I/O, which would stall an in-process event loop).

    python -m tests.codecs_rtmp.pyav_rtmp push SRC.flv rtmp://...   (paced to real time)
    python -m tests.codecs_rtmp.pyav_rtmp copy rtmp://... OUT.flv
"""

from __future__ import annotations

import sys
import time

import av


def remux(src: str, dst: str, paced: bool, dst_format: str | None = None) -> None:
    with av.open(src) as inp, av.open(dst, "w", format=dst_format) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        start = time.monotonic()
        for packet in inp.demux():
            if packet.dts is None:
                continue
            if paced and packet.time_base is not None:
                ahead = float(packet.dts * packet.time_base) - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


if __name__ == "__main__":
    mode, a, b = sys.argv[1:4]
    if mode == "push":
        remux(a, b, paced=True, dst_format="flv")
    else:
        remux(a, b, paced=False)
