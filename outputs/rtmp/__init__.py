"""``MistOutRTMP``: RTMP ingest (publish into ``MistInBuffer``), live playback from the
bus (mux once per stream, same bytes to every viewer) and push-out to other servers.

Module map:

* ``server``  -- the console script: capabilities, listener, push-out mode
* ``session`` -- one asyncio protocol per TCP connection around the sans-IO
  :class:`~mistcodecs.rtmp.RtmpServerConnection` (publish and play)
* ``live``    -- the RTMP "format" for the shared live fan-out (:mod:`outputs.fanout`)
* ``names``   -- publish/play name normalisation (``flv:``/``mp4:``, ``?query``)
* ``push``    -- push-out client: bus -> ``rtmp://`` target (restreaming)
"""
