"""HLS playlists (RFC 8216 + LL-HLS): models, renderers, parsers, blocking reload, segmentation.

* :mod:`.media` -- media playlists (segments, parts, server control, checks)
* :mod:`.master` -- master playlists (variants, EXT-X-MEDIA renditions)
* :mod:`.reload` -- ``_HLS_msn``/``_HLS_part``/``_HLS_skip`` decisions and delta updates
* :mod:`.segmenter` -- deterministic segment and part boundaries from keyframe times
* :mod:`.build` -- spans and parts to the playlist of the moment (live window, LL-HLS)
"""

from mistcodecs.hls.build import live_window, media_playlist, with_query
from mistcodecs.hls.master import (
    MasterPlaylist,
    Rendition,
    Variant,
    is_master_playlist,
    parse_master_playlist,
)
from mistcodecs.hls.media import (
    ByteRange,
    InitSection,
    MediaPlaylist,
    Part,
    PreloadHint,
    RenditionReport,
    Segment,
    ServerControl,
    check_media_playlist,
    check_update,
    parse_media_playlist,
)
from mistcodecs.hls.reload import (
    BadDirective,
    Decision,
    Directives,
    Outcome,
    PlaylistState,
    block_timeout,
    decide,
    delta_update,
    parse_directives,
)
from mistcodecs.hls.segmenter import (
    PartSpan,
    SegmentCutter,
    SegmentSpan,
    assign_parts,
    cut_parts,
    cut_segments,
    target_duration,
)

__all__ = [
    "BadDirective",
    "ByteRange",
    "Decision",
    "Directives",
    "InitSection",
    "MasterPlaylist",
    "MediaPlaylist",
    "Outcome",
    "Part",
    "PartSpan",
    "PlaylistState",
    "PreloadHint",
    "Rendition",
    "RenditionReport",
    "Segment",
    "SegmentCutter",
    "SegmentSpan",
    "ServerControl",
    "Variant",
    "assign_parts",
    "block_timeout",
    "check_media_playlist",
    "check_update",
    "cut_parts",
    "cut_segments",
    "decide",
    "delta_update",
    "is_master_playlist",
    "live_window",
    "media_playlist",
    "parse_directives",
    "parse_master_playlist",
    "parse_media_playlist",
    "target_duration",
    "with_query",
]
