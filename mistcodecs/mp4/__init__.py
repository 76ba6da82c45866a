"""Sans-IO ISO-BMFF (MP4, MOV, fragmented MP4, CMAF): boxes, demuxer and muxers.

- :mod:`.boxes` box headers over ``read_at(offset, size)``, bounded iteration, builders
- :mod:`.records` fixed-layout boxes (ftyp/styp, mvhd, tkhd, mdhd, hdlr, elst, trex,
  mfhd, tfhd, tfdt, trun, sidx, emsg) with ``parse``/``__bytes__``
- :mod:`.sampleentry` stsd entries <-> codec names and init data
- :mod:`.tables` sample tables as arrays
- :mod:`.demux` :class:`Mp4Demuxer` (random access, moov anywhere, fragments)
- :mod:`.fragment` :class:`Mp4FragmentMuxer` (init/fragment/segment/parts) and
  :class:`FragmentStream` (live progressive fMP4)
- :mod:`.progressive` :class:`Mp4ProgressiveMuxer` (moov-first VoD with Range mapping)
- :mod:`.codecs` RFC 6381 codec strings
"""

from mistcodecs.mp4.boxes import (
    BoxError,
    BoxHeader,
    buffer_reader,
    file_reader,
    iter_boxes,
    read_header,
)
from mistcodecs.mp4.codecs import codec_string
from mistcodecs.mp4.demux import Mp4Demuxer, Sample, SampleTable, open_file
from mistcodecs.mp4.fragment import FragmentStream, Mp4FragmentMuxer
from mistcodecs.mp4.progressive import Mp4ProgressiveMuxer
from mistcodecs.mp4.sampleentry import MUXABLE_CODECS

__all__ = [
    "MUXABLE_CODECS",
    "BoxError",
    "BoxHeader",
    "FragmentStream",
    "Mp4Demuxer",
    "Mp4FragmentMuxer",
    "Mp4ProgressiveMuxer",
    "Sample",
    "SampleTable",
    "buffer_reader",
    "codec_string",
    "file_reader",
    "iter_boxes",
    "open_file",
    "read_header",
]
