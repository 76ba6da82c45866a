"""MP4 timed text (3GPP ``tx3g``, what ffmpeg writes for ``mov_text``) as the media
model's subtitle payloads.

A tx3g sample is a 16-bit big-endian text length, the text (UTF-8, or UTF-16 behind a
byte order mark), then optional style boxes (``styl``, ``hlit``...) that the model has
no place for and that are dropped. A sample with no text is the gap between two cues
(writers emit one so that the previous cue ends): it carries no cue. The model's
subtitle payload is a 4-byte big-endian cue duration in ms followed by UTF-8 text
(:mod:`shm.model`).
"""

from __future__ import annotations

import struct

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_UTF16_BOMS = (b"\xfe\xff", b"\xff\xfe")


def tx3g_text(sample: bytes | memoryview) -> bytes:
    """The UTF-8 text of a tx3g sample (empty for a gap); a length running past the
    sample is cut to what is there."""
    if len(sample) < 2:
        return b""
    n = min(_U16.unpack_from(sample)[0], len(sample) - 2)
    text = bytes(sample[2 : 2 + n])
    if text[:2] in _UTF16_BOMS:
        return text.decode("utf-16", errors="replace").encode()
    return text


def subtitle_payload(duration_ms: int, text: bytes) -> bytes:
    """A model subtitle payload: cue duration (ms, big-endian 32 bits) + UTF-8 text."""
    return _U32.pack(max(0, duration_ms) & 0xFFFFFFFF) + text


def tx3g_to_subtitle(sample: bytes | memoryview, duration_ms: int) -> bytes:
    return subtitle_payload(duration_ms, tx3g_text(sample))
