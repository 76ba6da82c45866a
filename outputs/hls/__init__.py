"""MistOutHLS: HLS with MPEG-TS segments, served by MistOutHTTP under ``/hls/``.

* ``engine``  -- per-stream segment engine (live watcher, packet window, shared cache)
* ``respond`` -- cache headers, ETags, single-flight muxing (shared with CMAF)
* ``http``    -- the ``/hls/`` handler: master/media playlists, TS and WebVTT segments
* ``tscc``    -- continuity counters that make independently muxed TS segments continuous
* ``webvtt``  -- WebVTT segments from the model's subtitle packets
* ``player``  -- hls.js/dash.js for the ``/<s>.html`` page (``/hlsjs.js``, ``/dashjs.js``)
* ``main``    -- the ``MistOutHLS``/``MistOutCMAF`` programs (capabilities for the controller)

The pure pieces shared with :mod:`outputs.cmaf` (cache, boundaries, packet window) are
in :mod:`outputs.segments`.
"""
