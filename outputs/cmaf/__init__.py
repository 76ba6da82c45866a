"""MistOutCMAF: fragmented-MP4 segments for DASH (``index.mpd``) and HLS v7 / LL-HLS
(``index.m3u8``), served by MistOutHTTP under ``/cmaf/``; built on :mod:`outputs.hls.engine`.

* ``http`` -- the ``/cmaf/`` handler: MPD, master/media playlists, init, segments, parts
"""
