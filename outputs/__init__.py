"""Output programs (``MistOut*``): deliver streams from the shared-memory bus to viewers.

* :mod:`outputs.http` -- ``MistOutHTTP``, the HTTP front door (port 8080): progressive
  formats, ``json_``/``info_`` stream info, the player page, and the mount point of the
  HTTP-based outputs (HLS, CMAF, WebRTC) that register into :mod:`outputs.formats`.
* :mod:`outputs.fanout` -- live delivery, muxed once per stream and format and written to
  every viewer (also used by RTMP play).
* :mod:`outputs.formats` -- registry of progressive formats, URL-prefix handlers, player
  sources and player scripts.
* :mod:`outputs.selectors` -- ``?start/stop/audio/video/subtitle`` query parameters.
* :mod:`outputs.standalone` -- ``MistOutMP4 --stream s file.mp4`` and friends: recording.
"""
