"""The config written on first start, and the demo clip it points at.

With no config file, the controller writes one with every installed connector enabled
(MistServer's "enable default protocols"), a ``live`` stream with source ``push://``
and a ``demo`` VoD stream: a 10 s 640x360 H264 + AAC clip with a moving test pattern
and a tone, generated once with PyAV into ``mist-data/`` next to the config file.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from controller.programs import discover

DATA_DIR = "mist-data"
DEMO_FILE = "demo.mp4"
# Listed first, in this order; the other installed connectors follow alphabetically.
PREFERRED = ("HTTP", "RTMP", "HLS", "CMAF", "RTSP")


def default_protocols() -> list[dict[str, Any]]:
    names = sorted(p.short for p in discover().values() if p.group == "connectors")
    ordered = [n for n in PREFERRED if n in names] + [n for n in names if n not in PREFERRED]
    return [{"connector": n} for n in ordered]


def build_default(data_dir: Path, demo: Path | None) -> dict[str, Any]:
    streams: dict[str, Any] = {"live": {"name": "live", "source": "push://"}}
    if demo is not None:
        streams["demo"] = {"name": "demo", "source": str(demo)}
    return {
        "account": {},
        "config": {
            "controller": {},
            "protocols": default_protocols(),
            "triggers": {},
            "browse_roots": [str(data_dir)],
        },
        "streams": streams,
        "ui_settings": {},
    }


def make_demo_clip(
    path: Path, seconds: int = 10, width: int = 640, height: int = 360, fps: int = 25
) -> None:
    """Encode the demo clip (written to a temp name first, so a crash leaves no half file)."""
    import av
    import av.filter

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    rate = 44100
    with av.open(str(tmp), "w", format="mp4") as out:
        vstream = out.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "veryfast", "g": str(fps * 2), "bf": "0"}
        astream = out.add_stream("aac", rate=rate)
        astream.layout = "stereo"

        vgraph = av.filter.Graph()
        vsrc = vgraph.add("testsrc2", f"size={width}x{height}:rate={fps}:duration={seconds}")
        vfmt = vgraph.add("format", "yuv420p")
        vsink = vgraph.add("buffersink")
        vsrc.link_to(vfmt)
        vfmt.link_to(vsink)
        vgraph.configure()

        agraph = av.filter.Graph()
        asrc = agraph.add(
            "sine", f"frequency=440:beep_factor=4:sample_rate={rate}:duration={seconds}"
        )
        afmt = agraph.add("aformat", f"sample_fmts=fltp:channel_layouts=stereo:sample_rates={rate}")
        asink = agraph.add("abuffersink")
        asrc.link_to(afmt)
        afmt.link_to(asink)
        agraph.configure()

        for index in range(seconds * fps):
            frame = _pull(vsink)
            if frame is None:
                break
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        samples = 0
        while (aframe := _pull(asink)) is not None:
            aframe.pts = samples
            aframe.time_base = Fraction(1, rate)
            samples += aframe.samples
            out.mux(astream.encode(aframe))
        out.mux(astream.encode(None))
    tmp.replace(path)


def _pull(sink: Any) -> Any:
    import av

    try:
        return sink.pull()
    except (av.error.EOFError, av.error.BlockingIOError):
        return None
