"""``MistOutHLS`` and ``MistOutCMAF``: capability declarations for the controller.

Both protocols are served inside MistOutHTTP (``deps: HTTP``), as plug-ins loaded by
:func:`outputs.formats.load_plugins`; the programs only answer ``-j`` with what the
controller and the HTTP dispatcher need (``url_rel``, ``url_match``, player sources).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from common.capabilities import Capabilities

HLS_CAPS = Capabilities(
    name="HLS",
    friendly="HTTP Live Streaming (TS)",
    desc="HTTP Live Streaming with MPEG-TS segments, live and VoD, served through MistOutHTTP "
    "under /hls/<stream>/index.m3u8.",
    kind="connector",
    deps="HTTP",
    url_rel="/hls/$/index.m3u8",
    url_prefix="/hls/$/",
    url_match=["/hls/$/index.m3u8"],
    methods=[
        {
            "handler": "http",
            "type": "html5/application/vnd.apple.mpegurl",
            "hrn": "HLS (TS)",
            "priority": 7,
        },
    ],
    extra={"codecs": [[["H264", "HEVC"], ["AAC", "MP3", "AC3", "EAC3"]]]},
)

CMAF_CAPS = Capabilities(
    name="CMAF",
    friendly="CMAF (DASH, HLS v7, LL-HLS)",
    desc="Fragmented MP4 segments for DASH (/cmaf/<stream>/index.mpd) and HLS v7 / low-latency "
    "HLS (/cmaf/<stream>/index.m3u8), served through MistOutHTTP.",
    kind="connector",
    deps="HTTP",
    url_rel="/cmaf/$/index.mpd",
    url_prefix="/cmaf/$/",
    url_match=["/cmaf/$/index.mpd", "/cmaf/$/index.m3u8"],
    methods=[
        {"handler": "http", "type": "dash/video/mp4", "hrn": "DASH (CMAF)", "priority": 6},
        {
            "handler": "http",
            "type": "html5/application/vnd.apple.mpegurl;version=7",
            "hrn": "HLS v7 (CMAF)",
            "priority": 6,
        },
    ],
    extra={
        "codecs": [[["H264", "HEVC", "AV1", "VP9"], ["AAC", "MP3", "AC3", "EAC3", "opus", "FLAC"]]]
    },
)


def make_main(caps: Capabilities, served: str) -> Callable[..., Any]:
    @click.command(
        name=f"MistOut{caps.name}", context_settings={"help_option_names": ["-h", "--help"]}
    )
    @caps.click_options()
    def main(**_: Any) -> None:
        """Answer -j with the capabilities; the protocol itself runs inside MistOutHTTP."""
        click.echo(f"MistOut{caps.name}: served by MistOutHTTP at {served}", err=True)
        sys.exit(0)

    return main


hls_main = make_main(HLS_CAPS, "/hls/<stream>/index.m3u8")
cmaf_main = make_main(CMAF_CAPS, "/cmaf/<stream>/index.mpd and /cmaf/<stream>/index.m3u8")
