"""Names and binary layouts of every page on the bus (see docs/architecture.md).

Theory of operation
-------------------
Each track has one *track page* holding four rings of fixed-size records: parts (one
per packet), keys, fragments and data pages. A ring is addressed by a monotonically
increasing 64-bit record number ``seq``; the record lives in slot ``seq & (cap - 1)``
(capacity is a power of two). The page header keeps ``start`` (oldest record still
valid) and ``end`` (next record number) per ring. The writer only ever

1. writes a record into slot ``end & mask`` (a slot that retention freed long ago),
2. then publishes it by storing ``end + 1``;

retention advances ``start``. A reader that holds ``seq`` re-reads ``start`` *after*
copying a record: if ``seq < start`` the slot may have been recycled and the reader
has fallen behind the tail. Records store 32-bit truncations of other record numbers
(page and key numbers); :func:`unwrap32` expands them against a nearby 64-bit
reference, so they stay right across the 2**32 wrap.
"""

from __future__ import annotations

import struct

from common.streamname import shm_safe

PREFIX = "/Mst"
SHM_DIR = "/dev/shm"


# -- page names -------------------------------------------------------------------------


def meta_name(stream: str) -> str:
    return f"/MstMeta{shm_safe(stream)}"


def state_name(stream: str) -> str:
    return f"/MstSTATE{shm_safe(stream)}"


def lock_name(stream: str) -> str:
    return f"/MstLock{shm_safe(stream)}"


def user_name(stream: str) -> str:
    return f"/MstUser{shm_safe(stream)}"


def track_name(stream: str, track: int, gen: int) -> str:
    return f"/MstTrak{shm_safe(stream)}@{track}.{gen}"


def data_name(stream: str, track: int, page: int) -> str:
    return f"/MstData{shm_safe(stream)}@{track}_{page}"


def stream_prefixes(stream: str) -> list[str]:
    """Every name prefix (without the leading ``/``) a stream's pages start with."""
    s = shm_safe(stream)
    return [
        f"MstMeta{s}",
        f"MstSTATE{s}",
        f"MstLock{s}",
        f"MstUser{s}",
        f"MstTrak{s}@",
        f"MstData{s}@",
    ]


def unescape(safe: str) -> str:
    """Invert :func:`common.streamname.shm_safe` (``%xx`` escapes)."""
    out: list[str] = []
    i = 0
    while i < len(safe):
        c = safe[i]
        if c == "%" and i + 3 <= len(safe):
            try:
                out.append(chr(int(safe[i + 1 : i + 3], 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(c)
        i += 1
    return "".join(out)


# -- wrap-safe record numbers ------------------------------------------------------------

MASK32 = 0xFFFFFFFF


def seq_lt32(a: int, b: int) -> bool:
    """Serial-number ``a < b`` for 32-bit numbers (RFC 1982 style)."""
    return a != b and ((b - a) & MASK32) < 0x80000000


def unwrap32(ref: int, low: int) -> int:
    """The 64-bit number whose low 32 bits are ``low`` and that is nearest to ``ref``."""
    cand = (ref & ~MASK32) | (low & MASK32)
    if cand - ref > 0x80000000:
        cand -= 1 << 32
    elif ref - cand > 0x80000000:
        cand += 1 << 32
    return max(cand, 0)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# -- meta page: seqlock header + msgpack blob -------------------------------------------
# version u64 (odd while the writer rewrites), status u32, length u32, writer pid u32.
META_HDR = struct.Struct("<QIII4x")
META_VERSION = struct.Struct("<Q")
META_SIZE = 16 * 1024 * 1024  # nominal; tmpfs only backs what is written
META_STATUS_READY = 1
META_STATUS_CLOSED = 2

# -- state page: MistServer's 2 bytes (status, progress) ---------------------------------
STATE = struct.Struct("<BB")
STATE_SIZE = 2

# -- lock page: writer pid + start time, flock()ed by the writer ------------------------
LOCK = struct.Struct("<Qd")
LOCK_SIZE = 64

# -- track page --------------------------------------------------------------------------
# status, gen, caps x4, track id, dropped (out-of-order) count
TRACK_HDR = struct.Struct("<IIIIIIII")
TRACK_HDR_SIZE = 256
# ring counters: (start, end) for parts, keys, fragments, pages
OFF_COUNTERS = 32
COUNTERS = struct.Struct("<QQQQQQQQ")
OFF_PARTS_START = 32
OFF_PARTS_END = 40
OFF_KEYS_START = 48
OFF_KEYS_END = 56
OFF_FRAGS_START = 64
OFF_FRAGS_END = 72
OFF_PAGES_START = 80
OFF_PAGES_END = 88
# firstms, lastms, bps, maxbps
OFF_STATS = 96
STATS = struct.Struct("<qqqq")
OFF_LASTMS = 104
U64 = struct.Struct("<Q")
I64 = struct.Struct("<q")
U32 = struct.Struct("<I")

TRACK_STATUS_READY = 1
TRACK_STATUS_RELOAD = 4

# part: dts, position in data page, page no (low 32), size, composition offset,
# key no (low 32), flags (bit 0: keyframe)
PART = struct.Struct("<qIIIiII")
# key: time, first part, parts, bytes, duration, page no (low 32)
KEY = struct.Struct("<qQIIII")
# fragment: time, first key, keys, bytes, duration, pad
FRAG = struct.Struct("<qQIII4x")
# page: first key, first part, first time, last time, parts, keys, size, avail, state
PAGE = struct.Struct("<QQqqIIIII12x")
REC_SIZE = 32
PAGE_REC_SIZE = 64
assert PART.size == KEY.size == FRAG.size == REC_SIZE and PAGE.size == PAGE_REC_SIZE

PAGE_PLANNED = 0  # VoD: listed in the index, not in memory
PAGE_LOADED = 1  # complete (VoD) or being appended to (live)
PAGE_UNLOADED = 2  # VoD page dropped after its timeout; may be loaded again
PAGE_FULL = 3  # live page the writer moved on from


def track_page_size(parts_cap: int, keys_cap: int, frags_cap: int, pages_cap: int) -> int:
    return (
        TRACK_HDR_SIZE + REC_SIZE * (parts_cap + keys_cap + frags_cap) + PAGE_REC_SIZE * pages_cap
    )


def ring_offsets(parts_cap: int, keys_cap: int, frags_cap: int) -> tuple[int, int, int, int]:
    """Byte offsets of the parts, keys, fragments and pages rings."""
    parts = TRACK_HDR_SIZE
    keys = parts + REC_SIZE * parts_cap
    frags = keys + REC_SIZE * keys_cap
    pages = frags + REC_SIZE * frags_cap
    return parts, keys, frags, pages


# -- user page: viewer slots -------------------------------------------------------------
# header: slot high-water mark; then one u32 wait sequence per slot (written only by the
# slot's reader), then the slots.
USER_HDR = struct.Struct("<I")
OFF_EPOCH = 4  # u32 any reader stores a new value into after bumping its wait number
# u32 futex word: a wake-up generation only the writer changes; readers sleep on the value
# they saw. u32 sleepers flag: a reader about to block stores 1; the writer, finding 1
# after publishing, stores 0, bumps the generation and wakes every sleeper at once.
OFF_FUTEX = 8
OFF_SLEEPERS = 12
FUTEX_WAIT_FLAG = 0x80000000  # in a wait number: this reader sleeps on the futex, no datagram
USER_HDR_SIZE = 64
MAX_SLOTS = 1024
OFF_WAITS = USER_HDR_SIZE
OFF_SLOTS = USER_HDR_SIZE + 4 * MAX_SLOTS
SLOT_SIZE = 512
# slot: status, pid, socket token, heartbeat (unix time), flags (SLOT_FLAG_*)
SLOT = struct.Struct("<IIQdI4x")
OFF_SLOT_FLAGS = 24
SLOT_FLAG_SAW_ERROR = 1  # the reader has loaded metadata carrying the stream's error
WANT = struct.Struct("<IIQ")  # track, pad, key number
MAX_WANTS = (SLOT_SIZE - SLOT.size) // WANT.size
USER_SIZE = OFF_SLOTS + SLOT_SIZE * MAX_SLOTS
SLOT_FREE = 0
SLOT_ACTIVE = 1
NO_TRACK = 0xFFFFFFFF


def slot_offset(i: int) -> int:
    return OFF_SLOTS + SLOT_SIZE * i


def socket_address(token: int) -> bytes:
    """Abstract-namespace unix address of a reader's wake-up socket (no file on disk)."""
    return b"\0MstWake" + token.to_bytes(8, "big").hex().encode()
