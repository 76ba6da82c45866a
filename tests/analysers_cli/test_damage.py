"""Damaged inputs: truncated at every 7th byte, bit flips, wrong sizes, loops in MP4 box
sizes, an EBML element claiming 2^56 bytes. Every case must end with a diagnostic and a
non-zero exit (where the damage is detectable at all), never a traceback or a hang.

The sweeps run in-process through :func:`analysers.common.run` (the same driver the
programs use); a few cases go through the real programs to check the process contract."""

from __future__ import annotations

import io
import json
import random
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analysers.common import Analyser, run
from analysers.ebml import EbmlAnalyser
from analysers.flv import FlvAnalyser
from analysers.mp4 import Mp4Analyser
from analysers.ts import TsAnalyser
from tests.analysers_cli.progs import FIXTURES, cli, summary

KINDS: dict[str, type[Analyser]] = {
    "flv": FlvAnalyser,
    "ts": TsAnalyser,
    "mp4": Mp4Analyser,
    "ebml": EbmlAnalyser,
}
HIGH = {"flv": 3, "ts": 127, "mp4": 10, "ebml": 4}  # every printing path runs too
PER_CASE_S = 5.0
HUGE = b"\x01\xff\xff\xff\xff\xff\xff\xfe"  # an 8-byte EBML size: 2^56 - 2


def analyse(kind: str, data: bytes, detail: int = 0, as_json: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    started = time.monotonic()
    code = run(KINDS[kind](detail=detail, as_json=as_json, out=out), iter([data]), False, 0)
    assert time.monotonic() - started < PER_CASE_S, "analysis took too long"
    text = out.getvalue()
    assert code in (0, 1), text
    last = text.strip().splitlines()[-1]
    assert ("valid" in last) == (code == 0), last  # the summary agrees with the exit code
    if code:
        assert ("PROBLEM: " in text) or ('{"problem": ' in text), text
    return code, text


def read(fixture: str) -> bytes:
    """``name`` or ``name:length`` (a prefix of the fixture)."""
    name, _, length = fixture.partition(":")
    data = (FIXTURES / name).read_bytes()
    return data[: int(length)] if length else data


def tag_ends(fixture: str) -> set[int]:
    """Where an FLV ends cleanly: after the header or after any tag."""
    sidecar = FIXTURES / f"{fixture}.flv.json"
    records = [json.loads(line) for line in sidecar.read_text().splitlines()[:-1]]
    return {13} | {r["offset"] + 11 + r["size"] + 4 for r in records if "type" in r and "size" in r}


def box_ends(data: bytes) -> set[int]:
    ends, pos = set(), 0
    while pos + 8 <= len(data):
        pos += struct.unpack_from(">I", data, pos)[0]
        ends.add(pos)
    return ends


def clean_cuts(fixture: str, kind: str, data: bytes) -> set[int]:
    """Cut points after which the prefix is a complete, valid file of its own."""
    if kind == "flv":
        return tag_ends(fixture)
    if kind == "ts":
        return set(range(188, len(data), 188))  # an open-ended PES cannot be known cut
    if kind == "mp4" and "frag" in fixture:
        return {e for e in box_ends(data) if e > data.find(b"moov")}  # whole fragments
    return set()


SWEEP = [
    ("h264_aac.flv", "flv"),
    ("h264_aac.ts:7520", "ts"),  # its first 40 packets (PAT, PMT, both PIDs): keeps it quick
    ("h264_aac_faststart.mp4", "mp4"),
    ("vp9_opus.webm", "ebml"),
    ("h264_aac_frag.mp4", "mp4"),  # the sweep itself runs with -m slow, see below
    pytest.param("h264_aac.ts", "ts", marks=pytest.mark.slow),
    pytest.param("hevc_mp3.ts", "ts", marks=pytest.mark.slow),
    pytest.param("h264_aac.mp4", "mp4", marks=pytest.mark.slow),
    pytest.param("hevc_ac3.mkv", "ebml", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [c if i != 4 else pytest.param(*c, marks=pytest.mark.slow) for i, c in enumerate(SWEEP)],
)
def test_truncated_at_every_7th_byte(fixture: str, kind: str) -> None:
    data = read(fixture)
    clean = clean_cuts(fixture, kind, data)
    undetected = []
    for n in range(0, len(data), 7):
        code, _ = analyse(kind, data[:n])
        if code == 0 and n not in clean:
            undetected.append(n)
    assert not undetected, f"truncations reported valid: {undetected}"


@pytest.mark.parametrize(("fixture", "kind"), SWEEP[:5])
def test_truncated_at_high_detail_and_json(fixture: str, kind: str) -> None:
    data = read(fixture)
    for n in range(3, len(data), 61):  # every printing path on a cut file
        analyse(kind, data[:n], HIGH[kind], as_json=n % 2 == 0)


@pytest.mark.parametrize(("fixture", "kind"), SWEEP[:5])
def test_bit_flips(fixture: str, kind: str) -> None:
    """Flips may hit media payload (undetectable), so only the contract is checked;
    at least some of the flips in the first 2 KiB (headers, configs) must be noticed."""
    data = read(fixture)
    rng = random.Random(fixture)
    noticed = 0
    for i in range(60):
        b = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            pos = rng.randrange(min(len(b), 2048) if i % 2 else len(b))
            b[pos] ^= 1 << rng.randrange(8)
        code, _ = analyse(kind, bytes(b), HIGH[kind] if i % 3 == 0 else 0, as_json=i % 2 == 0)
        noticed += code
    assert noticed >= 3


def test_random_garbage_is_never_valid() -> None:
    rng = random.Random(7)
    for kind in KINDS:
        for size in (1, 7, 188, 1000, 5000):
            code, _ = analyse(kind, rng.randbytes(size), HIGH[kind])
            assert code == 1, (kind, size)


# -- wrong sizes -------------------------------------------------------------------------


def flv_fixture() -> tuple[bytearray, dict[str, int]]:
    data = bytearray((FIXTURES / "h264_aac.flv").read_bytes())
    records = [
        json.loads(line)
        for line in (FIXTURES / "h264_aac.flv.flv.json").read_text().splitlines()[:-1]
    ]
    tag = [r for r in records if r.get("kind") == "frame"][20]
    return data, tag


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("size+1000", "unknown FLV tag type"),
        ("size-1", "unknown FLV tag type"),
        ("size=ffffff", "truncated"),
        ("size=0", "PreviousTagSize"),
        ("prev_size", "bad PreviousTagSize 12345"),
        ("header_size", "FLV header size"),
        ("timestamp=0", "goes backwards"),
    ],
)
def test_flv_wrong_sizes(change: str, message: str) -> None:
    data, tag = flv_fixture()
    at, size = tag["offset"], tag["size"]
    if change.startswith("size"):
        new = {"size+1000": size + 1000, "size-1": size - 1, "size=ffffff": 0xFFFFFF, "size=0": 0}
        data[at + 1 : at + 4] = new[change].to_bytes(3, "big")
    elif change == "prev_size":
        struct.pack_into(">I", data, at + 11 + size, 12345)
    elif change == "header_size":
        struct.pack_into(">I", data, 5, 0xFFFFFFFF)
    else:
        data[at + 4 : at + 8] = bytes(4)
    code, text = analyse("flv", bytes(data), 3)
    assert code == 1 and message in text, text


def ts_fixture() -> bytearray:
    return bytearray((FIXTURES / "h264_aac.ts").read_bytes())


def first_pes(data: bytes, pid: int) -> tuple[int, int]:
    """(packet start, PES start) of the first PES on ``pid``."""
    for k in range(0, len(data), 188):
        if data[k + 1] & 0x40 and ((data[k + 1] & 0x1F) << 8 | data[k + 2]) == pid:
            return k, k + 4 + (1 + data[k + 4] if data[k + 3] & 0x20 else 0)
    raise AssertionError("no PES")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop_byte", "lost sync"),
        ("cc", "continuity counter"),
        ("pes_length", "truncated"),
        ("adaptation_length", "adaptation field of 255 bytes"),
        ("tail", "truncated TS packet at the end"),
    ],
)
def test_ts_wrong_sizes(change: str, message: str) -> None:
    data = ts_fixture()
    pkt, pes = first_pes(data, 257)
    if change == "drop_byte":
        del data[1000]
    elif change == "cc":
        data[188 * 30 + 3] ^= 0x05
    elif change == "pes_length":
        data[pes + 4 : pes + 6] = b"\xff\xff"
    elif change == "adaptation_length":
        data[pkt + 3] |= 0x20
        data[pkt + 4] = 0xFF
    else:
        data += data[:100]
    code, text = analyse("ts", bytes(data), 127)
    assert code == 1 and message in text, text


def test_ts_impossible_section_length_is_reported() -> None:
    data = ts_fixture()
    # the first PAT packet (FFmpeg writes the SDT first): PID 0, PUSI, pointer field 0
    pat = next(k for k in range(0, len(data), 188) if data[k + 1 : k + 3] == b"\x40\x00")
    assert data[pat + 4] == 0 and data[pat + 5] == 0
    data[pat + 6 : pat + 8] = b"\xbf\xff"  # section_syntax 1, section_length 0xFFF
    code, text = analyse("ts", bytes(data), 127)
    assert code == 1 and "over the maximum of 1021" in text, text


def mp4_fixture() -> tuple[bytearray, int, int]:
    """The faststart file, the offset of moov and of its first trak."""
    data = bytearray((FIXTURES / "h264_aac_faststart.mp4").read_bytes())
    moov = data.find(b"moov") - 4
    trak = data.find(b"trak") - 4
    return data, moov, trak


def with_largesize(data: bytearray, at: int, value: int) -> bytes:
    """Turn the box at ``at`` into a 64-bit-size box claiming ``value`` bytes."""
    struct.pack_into(">I", data, at, 1)
    return bytes(data[: at + 8]) + struct.pack(">Q", value) + bytes(data[at + 8 :])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("moov=4", "impossible size 4"),
        ("moov=largesize0", "impossible size 0"),
        ("trak=largesize8", "impossible size 8"),  # would step back onto itself
        ("trak=largesize16", "runs past"),
        ("trak=7", "impossible size 7"),
        ("trak=huge", "runs past its parent"),
        ("stsz_count", "'stsz' needs"),
        ("stco_count", "'stco' needs"),
        ("stts_count", "'stts' needs"),
        ("stts_samples", "stts covers 4294967295 samples"),
        ("stco_offset", "outside the file or any mdat"),
        ("stsc_first", "first_chunk 0"),
        ("mdhd_timescale", "timescale is 0"),
        ("avcC_size", "runs past"),
    ],
)
def test_mp4_wrong_sizes_and_loops(change: str, message: str) -> None:
    data, moov, trak = mp4_fixture()
    box, _, what = change.partition("=")
    at = {"moov": moov, "trak": trak}.get(box, -1)
    spot = data.find(box.split("_")[0].encode()) if at < 0 else at
    blob: bytes
    if what.startswith("largesize"):
        blob = with_largesize(data, at, int(what[9:]))
    else:
        if what == "4" or what == "7":
            struct.pack_into(">I", data, at, int(what))
        elif what == "huge":
            struct.pack_into(">I", data, at, 0xFFFFFFF0)
        elif change in ("stsz_count",):
            struct.pack_into(">I", data, spot + 12, 0xFFFFFFFF)
        elif change in ("stco_count", "stts_count"):
            struct.pack_into(">I", data, spot + 8, 0xFFFFFFFF)
        elif change == "stts_samples":
            struct.pack_into(">I", data, spot + 12, 0xFFFFFFFF)
        elif change == "stco_offset":
            struct.pack_into(">I", data, spot + 12, 0x7FFFFFFF)
        elif change == "stsc_first":
            struct.pack_into(">I", data, spot + 12, 0)
        elif change == "mdhd_timescale":
            struct.pack_into(">I", data, spot + 16, 0)
        elif change == "avcC_size":
            struct.pack_into(">I", data, spot - 4, 10)
        blob = bytes(data)
    code, text = analyse("mp4", blob, 10, as_json=True)
    assert code == 1 and message in text, text


def test_mp4_nested_size_zero_is_reported() -> None:
    data, _, trak = mp4_fixture()
    struct.pack_into(">I", data, trak, 0)
    code, text = analyse("mp4", bytes(data), 1)
    assert code == 1, text


def test_mp4_stsc_naming_too_many_samples_is_reported() -> None:
    data, _, _ = mp4_fixture()
    stsc = data.find(b"stsc")
    struct.pack_into(">I", data, stsc + 16, 0xFFFFFFFF)
    code, text = analyse("mp4", bytes(data), 1)
    assert code == 1, text


def ebml_fixture() -> tuple[bytes, dict[str, int]]:
    data = (FIXTURES / "vp9_opus.webm").read_bytes()
    sidecar = (FIXTURES / "vp9_opus.webm.ebml.json").read_text().splitlines()[:-1]
    offsets: dict[str, int] = {}
    for line in sidecar:
        rec = json.loads(line)
        if "element" in rec:
            offsets.setdefault(rec["element"], rec["offset"])
    return data, offsets


def with_ebml_size(data: bytes, at: int, size: bytes) -> bytes:
    first = data[at]
    id_len = next(i for i in range(1, 5) if first & (0x80 >> (i - 1)))
    size_len = next(i for i in range(1, 9) if data[at + id_len] & (0x80 >> (i - 1)))
    return data[: at + id_len] + size + data[at + id_len + size_len :]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ("EBML", "claims 72057594037927934 bytes"),
        ("Segment", "ends inside an element"),
        ("Info", "runs past its parent's end"),
        ("Tracks", "runs past its parent's end"),
        ("Cluster", "runs past its parent's end"),
    ],
)
def test_ebml_element_claiming_2_to_the_56(element: str, message: str) -> None:
    data, offsets = ebml_fixture()
    code, text = analyse("ebml", with_ebml_size(data, offsets[element], HUGE), 4, as_json=True)
    assert code == 1 and message in text, text


def test_ebml_bad_vint() -> None:
    data, offsets = ebml_fixture()
    code, text = analyse("ebml", with_ebml_size(data, offsets["Info"], b"\x00\x81"), 4)
    assert code == 1 and "bad first byte 0x00" in text


def test_ebml_unknown_size_master_message() -> None:
    data, offsets = ebml_fixture()
    unknown = b"\x01\xff\xff\xff\xff\xff\xff\xff"
    code, text = analyse("ebml", with_ebml_size(data, offsets["Info"], unknown), 2)
    assert code == 1
    assert "None" not in text, text


# -- through the real programs -----------------------------------------------------------


def test_damage_through_the_programs(tmp_path: Path) -> None:
    flv = (FIXTURES / "h264_aac.flv").read_bytes()
    mp4, _, trak = mp4_fixture()
    looped = tmp_path / "loop.mp4"
    looped.write_bytes(with_largesize(mp4, trak, 8))
    webm, offsets = ebml_fixture()
    cases = [
        ("MistAnalyserFLV", ["-"], flv[: len(flv) // 2 + 3]),
        ("MistAnalyserMP4", [str(looped), "-D", "10"], None),
        ("MistAnalyserEBML", ["-", "--json"], with_ebml_size(webm, offsets["Cluster"], HUGE)),
        ("MistAnalyserTS", ["-", "-D", "127"], random.Random(3).randbytes(188 * 20)),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            pool.submit(cli, prog, *args, stdin=stdin, timeout=30) for prog, args, stdin in cases
        ]
    for (prog, _, _), job in zip(cases, jobs, strict=True):
        res = job.result()
        assert res.returncode == 1, (prog, res.stdout[-2000:], res.stderr)
        assert "Traceback" not in res.stdout + res.stderr
        assert "problem" in summary(res.stdout)
