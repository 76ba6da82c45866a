"""MistOutHLS: HLS with MPEG-TS segments, served by MistOutHTTP under ``/hls/``.

* ``engine``  -- per-stream segment engine (live watcher, packet window, shared cache)
* ``respond`` -- cache headers, ETags, single-flight muxing (shared with CMAF)
* ``http``    -- the ``/hls/`` handler: master/media playlists and TS segments
* ``main``    -- the ``MistOutHLS`` program (capabilities for the controller)
"""
