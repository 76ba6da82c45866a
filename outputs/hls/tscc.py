"""Continuity counters that make TS segments continuous in any order of muxing.

A segment is muxed on its own (whatever segment was muxed before it, or by which
process), so its counters cannot carry on from the previous one. Instead every
segment is normalised so each PES PID starts at counter 0 and ends at 15: one full
payload packet of the PID is split into up to 16 shorter ones (adaptation-field
stuffing) until the PID's packet count is a multiple of 16. The segment after it then
continues at 0 exactly as a sequential muxer would. PAT and PMT are written once per
segment, so their counter is the segment number modulo 16.
"""

from __future__ import annotations

from mistcodecs.ts.mux import PMT_PID
from mistcodecs.ts.packets import PACKET_SIZE, PID_PAT, SYNC, build_packet

PSI_PIDS = frozenset({PID_PAT, PMT_PID})
PAYLOAD = PACKET_SIZE - 4


def _split(packet: bytes, pieces: int) -> list[bytes]:
    """A payload-only, non-start packet as ``pieces`` packets carrying the same bytes."""
    pid = ((packet[1] & 0x1F) << 8) | packet[2]
    payload = packet[4:]
    size, extra = divmod(len(payload), pieces)
    out: list[bytes] = []
    pos = 0
    for i in range(pieces):
        n = size + (1 if i < extra else 0)
        out.append(build_packet(pid, payload[pos : pos + n], 0))
        pos += n
    return out


def align_counters(ts: bytes, segment_number: int) -> bytes:
    """``ts`` (whole 188-byte packets) with counters normalised as the module says."""
    packets = [ts[i : i + PACKET_SIZE] for i in range(0, len(ts) - PACKET_SIZE + 1, PACKET_SIZE)]
    by_pid: dict[int, list[int]] = {}
    for i, p in enumerate(packets):
        if p[0] != SYNC:
            raise ValueError(f"packet {i} of a muxed segment lost its sync byte")
        by_pid.setdefault(((p[1] & 0x1F) << 8) | p[2], []).append(i)
    grown: dict[int, list[bytes]] = {}
    for pid, idxs in by_pid.items():
        extra = -len(idxs) % 16
        if pid in PSI_PIDS or not extra:
            continue
        # the last payload-only packet that is not a PES start: splitting it moves no header
        full = [i for i in idxs if packets[i][3] & 0x30 == 0x10 and not packets[i][1] & 0x40]
        if full:
            grown[full[-1]] = _split(packets[full[-1]], extra + 1)
    out = bytearray()
    counters: dict[int, int] = {}
    for i, p in enumerate(packets):
        for q in grown.get(i, (p,)):
            pid = ((q[1] & 0x1F) << 8) | q[2]
            if pid in PSI_PIDS:
                cc = (segment_number + counters.get(pid, 0)) & 0xF
                counters[pid] = counters.get(pid, 0) + 1
            else:
                cc = counters.get(pid, 0) & 0xF
                if q[3] & 0x10:  # only packets with payload advance the counter
                    counters[pid] = counters.get(pid, 0) + 1
            out += q[:3]
            out.append((q[3] & 0xF0) | cc)
            out += q[4:]
    return bytes(out)
