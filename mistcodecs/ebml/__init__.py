"""EBML (Matroska/WebM): element primitives, schema, blocks, a streaming demuxer and a
live muxer. See :mod:`mistcodecs.ebml.demux` and :mod:`mistcodecs.ebml.mux`."""

from mistcodecs.ebml.block import Block
from mistcodecs.ebml.demux import BlockPos, CuePoint, EbmlDemuxer
from mistcodecs.ebml.element import ElementHeader, decode_value, iter_children, value_of
from mistcodecs.ebml.mux import WEBM_CODECS, EbmlMuxer, supports

__all__ = [
    "WEBM_CODECS",
    "Block",
    "BlockPos",
    "CuePoint",
    "EbmlDemuxer",
    "EbmlMuxer",
    "ElementHeader",
    "decode_value",
    "iter_children",
    "supports",
    "value_of",
]
