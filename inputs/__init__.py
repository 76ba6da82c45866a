"""Inputs (``MistIn*``): the programs that write one stream each onto the shm bus.

VoD file inputs share one engine; a format module only indexes and re-reads frames:

- :mod:`inputs.base`   -- :class:`~inputs.base.VodInput` (lifecycle, pages on demand,
  idle exit), :class:`~inputs.base.VodFormat` / :class:`~inputs.base.FrameLoader` /
  :class:`~inputs.base.PositionLoader` (what a format provides)
- :mod:`inputs.index`  -- :class:`~inputs.index.MediaIndex` and the ``.dtsh`` sidecar
- :mod:`inputs.cli`    -- the shared command line and ``-j`` capabilities
- :mod:`inputs.seq`    -- helpers for formats indexed by one sequential demux
- :mod:`inputs.mp4`, :mod:`inputs.flv`, :mod:`inputs.ts`, :mod:`inputs.ebml` -- MistInMP4,
  MistInFLV, MistInTS, MistInEBML over our own demuxers
- :mod:`inputs.libav`, :mod:`inputs.avconv` -- MistInAV (PyAV) and its conversion of
  FFmpeg packets to the media model

``inputs.buffer`` (MistInBuffer, live pushes) is a separate program.
"""
