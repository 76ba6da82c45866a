"""MPEG-TS (ISO/IEC 13818-1): packets, PSI, PES, and the sans-IO demuxer and muxer."""

from mistcodecs.ts.demux import TsDemuxer
from mistcodecs.ts.mux import TsMuxer

__all__ = ["TsDemuxer", "TsMuxer"]
