"""The subset of the EBML/Matroska element schema (RFC 8794, RFC 9559) that we name.

Each entry: ID -> (name, type, parent ID). The parent lets a parser tell where an
element may appear: an unknown-size master ends at the first element that cannot be
its child, and the analyser flags known elements found under the wrong parent.
Unknown IDs are skipped by size.
"""

from __future__ import annotations

import enum


class ElementType(enum.Enum):
    MASTER = "m"
    UINT = "u"
    INT = "i"
    FLOAT = "f"
    STRING = "s"
    UTF8 = "8"
    BINARY = "b"
    DATE = "d"


M, U, INT_, F, S, T, B, D = (
    ElementType.MASTER,
    ElementType.UINT,
    ElementType.INT,
    ElementType.FLOAT,
    ElementType.STRING,
    ElementType.UTF8,
    ElementType.BINARY,
    ElementType.DATE,
)

ROOT = 0  # parent of top-level elements
ANY = -1  # global elements (Void, CRC-32) may appear anywhere

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
SEEK_HEAD = 0x114D9B74
INFO = 0x1549A966
TIMESTAMP_SCALE = 0x2AD7B1
DURATION = 0x4489
CLUSTER = 0x1F43B675
TIMESTAMP = 0xE7
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1
BLOCK_DURATION = 0x9B
REFERENCE_BLOCK = 0xFB
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
DEFAULT_DURATION = 0x23E383
LANGUAGE = 0x22B59C
VIDEO = 0xE0
PIXEL_WIDTH = 0xB0
PIXEL_HEIGHT = 0xBA
AUDIO = 0xE1
SAMPLING_FREQUENCY = 0xB5
CHANNELS = 0x9F
BIT_DEPTH = 0x6264
CODEC_DELAY = 0x56AA
SEEK_PRE_ROLL = 0x56BB
CUES = 0x1C53BB6B
CUE_POINT = 0xBB
CUE_TIME = 0xB3
CUE_TRACK_POSITIONS = 0xB7
CUE_TRACK = 0xF7
CUE_CLUSTER_POSITION = 0xF1
CONTENT_ENCODINGS = 0x6D80
VOID = 0xEC

SCHEMA: dict[int, tuple[str, ElementType, int]] = {
    EBML: ("EBML", M, ROOT),
    0x4286: ("EBMLVersion", U, EBML),
    0x42F7: ("EBMLReadVersion", U, EBML),
    0x42F2: ("EBMLMaxIDLength", U, EBML),
    0x42F3: ("EBMLMaxSizeLength", U, EBML),
    0x4282: ("DocType", S, EBML),
    0x4287: ("DocTypeVersion", U, EBML),
    0x4285: ("DocTypeReadVersion", U, EBML),
    VOID: ("Void", B, ANY),
    0xBF: ("CRC-32", B, ANY),
    SEGMENT: ("Segment", M, ROOT),
    SEEK_HEAD: ("SeekHead", M, SEGMENT),
    0x4DBB: ("Seek", M, SEEK_HEAD),
    0x53AB: ("SeekID", B, 0x4DBB),
    0x53AC: ("SeekPosition", U, 0x4DBB),
    INFO: ("Info", M, SEGMENT),
    0x73A4: ("SegmentUUID", B, INFO),
    TIMESTAMP_SCALE: ("TimestampScale", U, INFO),
    DURATION: ("Duration", F, INFO),
    0x4461: ("DateUTC", D, INFO),
    0x7BA9: ("Title", T, INFO),
    0x4D80: ("MuxingApp", T, INFO),
    0x5741: ("WritingApp", T, INFO),
    CLUSTER: ("Cluster", M, SEGMENT),
    TIMESTAMP: ("Timestamp", U, CLUSTER),
    0xA7: ("Position", U, CLUSTER),
    0xAB: ("PrevSize", U, CLUSTER),
    SIMPLE_BLOCK: ("SimpleBlock", B, CLUSTER),
    BLOCK_GROUP: ("BlockGroup", M, CLUSTER),
    BLOCK: ("Block", B, BLOCK_GROUP),
    0x75A1: ("BlockAdditions", M, BLOCK_GROUP),
    BLOCK_DURATION: ("BlockDuration", U, BLOCK_GROUP),
    0xFA: ("ReferencePriority", U, BLOCK_GROUP),
    REFERENCE_BLOCK: ("ReferenceBlock", INT_, BLOCK_GROUP),
    0xA4: ("CodecState", B, BLOCK_GROUP),
    0x75A2: ("DiscardPadding", INT_, BLOCK_GROUP),
    TRACKS: ("Tracks", M, SEGMENT),
    TRACK_ENTRY: ("TrackEntry", M, TRACKS),
    TRACK_NUMBER: ("TrackNumber", U, TRACK_ENTRY),
    0x73C5: ("TrackUID", U, TRACK_ENTRY),
    TRACK_TYPE: ("TrackType", U, TRACK_ENTRY),
    0xB9: ("FlagEnabled", U, TRACK_ENTRY),
    0x88: ("FlagDefault", U, TRACK_ENTRY),
    0x55AA: ("FlagForced", U, TRACK_ENTRY),
    0x9C: ("FlagLacing", U, TRACK_ENTRY),
    DEFAULT_DURATION: ("DefaultDuration", U, TRACK_ENTRY),
    0x23314F: ("TrackTimestampScale", F, TRACK_ENTRY),
    0x55EE: ("MaxBlockAdditionID", U, TRACK_ENTRY),
    0x536E: ("Name", T, TRACK_ENTRY),
    LANGUAGE: ("Language", S, TRACK_ENTRY),
    0x22B59D: ("LanguageBCP47", S, TRACK_ENTRY),
    CODEC_ID: ("CodecID", S, TRACK_ENTRY),
    CODEC_PRIVATE: ("CodecPrivate", B, TRACK_ENTRY),
    0x258688: ("CodecName", T, TRACK_ENTRY),
    CODEC_DELAY: ("CodecDelay", U, TRACK_ENTRY),
    SEEK_PRE_ROLL: ("SeekPreRoll", U, TRACK_ENTRY),
    VIDEO: ("Video", M, TRACK_ENTRY),
    0x9A: ("FlagInterlaced", U, VIDEO),
    0x53B8: ("StereoMode", U, VIDEO),
    PIXEL_WIDTH: ("PixelWidth", U, VIDEO),
    PIXEL_HEIGHT: ("PixelHeight", U, VIDEO),
    0x54AA: ("PixelCropBottom", U, VIDEO),
    0x54BB: ("PixelCropTop", U, VIDEO),
    0x54CC: ("PixelCropLeft", U, VIDEO),
    0x54DD: ("PixelCropRight", U, VIDEO),
    0x54B0: ("DisplayWidth", U, VIDEO),
    0x54BA: ("DisplayHeight", U, VIDEO),
    0x54B2: ("DisplayUnit", U, VIDEO),
    0x2383E3: ("FrameRate", F, VIDEO),
    0x55B0: ("Colour", M, VIDEO),
    0x55B1: ("MatrixCoefficients", U, 0x55B0),
    0x55B2: ("BitsPerChannel", U, 0x55B0),
    0x55B3: ("ChromaSubsamplingHorz", U, 0x55B0),
    0x55B4: ("ChromaSubsamplingVert", U, 0x55B0),
    0x55B7: ("ChromaSitingHorz", U, 0x55B0),
    0x55B8: ("ChromaSitingVert", U, 0x55B0),
    0x55B9: ("Range", U, 0x55B0),
    0x55BA: ("TransferCharacteristics", U, 0x55B0),
    0x55BB: ("Primaries", U, 0x55B0),
    AUDIO: ("Audio", M, TRACK_ENTRY),
    SAMPLING_FREQUENCY: ("SamplingFrequency", F, AUDIO),
    0x78B5: ("OutputSamplingFrequency", F, AUDIO),
    CHANNELS: ("Channels", U, AUDIO),
    BIT_DEPTH: ("BitDepth", U, AUDIO),
    CONTENT_ENCODINGS: ("ContentEncodings", M, TRACK_ENTRY),
    CUES: ("Cues", M, SEGMENT),
    CUE_POINT: ("CuePoint", M, CUES),
    CUE_TIME: ("CueTime", U, CUE_POINT),
    CUE_TRACK_POSITIONS: ("CueTrackPositions", M, CUE_POINT),
    CUE_TRACK: ("CueTrack", U, CUE_TRACK_POSITIONS),
    CUE_CLUSTER_POSITION: ("CueClusterPosition", U, CUE_TRACK_POSITIONS),
    0xF0: ("CueRelativePosition", U, CUE_TRACK_POSITIONS),
    0xB2: ("CueDuration", U, CUE_TRACK_POSITIONS),
    0x5378: ("CueBlockNumber", U, CUE_TRACK_POSITIONS),
    0x1941A469: ("Attachments", M, SEGMENT),
    0x1043A770: ("Chapters", M, SEGMENT),
    0x1254C367: ("Tags", M, SEGMENT),
    0x7373: ("Tag", M, 0x1254C367),
    0x63C0: ("Targets", M, 0x7373),
    0x68CA: ("TargetTypeValue", U, 0x63C0),
    0x63C5: ("TagTrackUID", U, 0x63C0),
    0x67C8: ("SimpleTag", M, 0x7373),
    0x45A3: ("TagName", T, 0x67C8),
    0x447A: ("TagLanguage", S, 0x67C8),
    0x4484: ("TagDefault", U, 0x67C8),
    0x4487: ("TagString", T, 0x67C8),
}

# Elements that only appear directly under a Segment (used to close unknown-size Clusters).
LEVEL1 = frozenset(eid for eid, (_n, _t, parent) in SCHEMA.items() if parent == SEGMENT)


def element_name(element_id: int) -> str:
    entry = SCHEMA.get(element_id)
    return entry[0] if entry else f"Unknown(0x{element_id:X})"


def element_type(element_id: int) -> ElementType:
    entry = SCHEMA.get(element_id)
    return entry[1] if entry else ElementType.BINARY


def parent_of(element_id: int) -> int | None:
    """Parent ID (``ROOT``, ``ANY``) or ``None`` for an unknown element."""
    entry = SCHEMA.get(element_id)
    return entry[2] if entry else None


def may_contain(parent_id: int, child_id: int) -> bool:
    """Whether a known ``child_id`` is allowed directly under ``parent_id``.
    Unknown children are allowed anywhere (skipped by size)."""
    p = parent_of(child_id)
    return p is None or p in (ANY, parent_id)
