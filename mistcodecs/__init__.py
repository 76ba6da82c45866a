"""Sans-IO container and protocol codecs shared by inputs, outputs and analysers.

Nothing here touches sockets, files or clocks: callers feed bytes in and get
events out, or hand packets in and get bytes to send. One codebase serves the
server and the analysers.

Conventions (media model: :mod:`shm.model`):

* A *demuxer* has ``feed(data) -> list[TrackMeta | Packet]`` (tracks are announced
  before their first packet, ids start at 1) and ``end() -> list[...]``. Container
  formats that need random access (ISO-BMFF) take a ``read_at(offset, size)`` callable
  instead.
* A *muxer* is built from the track list and has ``header() -> bytes``,
  ``packet(p) -> bytes`` and ``end() -> bytes``, so a live stream is muxed once and
  the same bytes are written to every viewer.
* Bad data raises :class:`mistcodecs.errors.FormatError` (a ``ValueError``) with a
  message that says what and where ("FLV tag body truncated at byte 1234").
"""
