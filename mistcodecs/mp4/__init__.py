"""Sans-IO ISO-BMFF (MP4, MOV, fragmented MP4, CMAF): boxes, demuxer and muxers."""

from mistcodecs.mp4.boxes import (
    BoxError,
    BoxHeader,
    buffer_reader,
    file_reader,
    iter_boxes,
    read_header,
)
from mistcodecs.mp4.demux import Mp4Demuxer, Sample, SampleTable, open_file

__all__ = [
    "BoxError",
    "BoxHeader",
    "Mp4Demuxer",
    "Sample",
    "SampleTable",
    "buffer_reader",
    "file_reader",
    "iter_boxes",
    "open_file",
    "read_header",
]
