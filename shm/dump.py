"""MistUtilMETA: print a stream's metadata, index and viewers straight from shared memory.

``MistUtilMETA <stream>`` (``--json``, ``-w/--watch``), ``MistUtilMETA --list``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import posix_ipc

from . import layout as L
from .cleanup import list_streams, writer_alive
from .errors import ShmFormatError
from .meta import MetaPage, read_state
from .segment import Segment
from .track import TrackPage
from .users import UserPage, pid_alive


def _ranges(first: int, last: int) -> str:
    return f"{first}..{last - 1}" if last > first else "none"


def snapshot(stream: str) -> dict[str, Any]:
    """Everything MistUtilMETA shows, as plain data. Raises ``ShmFormatError``/ExistentialError."""
    segs: list[Segment] = []
    try:
        meta_seg = Segment.open(L.meta_name(stream), min_size=L.META_HDR.size, keep_fd=False)
        segs.append(meta_seg)
        mp = MetaPage(meta_seg)
        meta = mp.load()
        out: dict[str, Any] = {
            "stream": stream,
            "live": meta.live,
            "source": meta.source,
            "version": meta.version,
            "closed": mp.status == L.META_STATUS_CLOSED,
            "writer_alive": writer_alive(stream),
            "fragment_ms": meta.fragment_ms,
            "dvr_ms": meta.dvr_ms,
            "tracks": {},
            "readers": [],
        }
        try:
            st = Segment.open(L.state_name(stream), keep_fd=False)
            segs.append(st)
            state, progress = read_state(st)
            out["state"], out["progress"] = state.name, progress
        except posix_ipc.ExistentialError:
            out["state"], out["progress"] = "OFF", 0
        for tid, tm in sorted(meta.tracks.items()):
            rec: dict[str, Any] = {
                "type": tm.type,
                "codec": tm.codec,
                "init_size": len(tm.init),
                "width": tm.width,
                "height": tm.height,
                "fpks": tm.fpks,
                "rate": tm.rate,
                "channels": tm.channels,
                "lang": tm.lang,
                "page": meta.pages.get(tid, ""),
            }
            try:
                seg = Segment.open(meta.pages[tid], keep_fd=False)
            except (posix_ipc.ExistentialError, KeyError):
                out["tracks"][tid] = rec
                continue
            segs.append(seg)
            page = TrackPage(seg)
            firstms, lastms, bps, maxbps = page.stats()
            ps, pe, ks, ke, fs, fe, gs, ge = page.counters()
            pages = page.pages()
            rec.update(
                firstms=firstms,
                lastms=lastms,
                bps=bps,
                maxbps=maxbps,
                dropped=page.dropped,
                capacity={
                    "parts": page.parts_cap,
                    "keys": page.keys_cap,
                    "fragments": page.frags_cap,
                    "pages": page.pages_cap,
                },
                parts=[ps, pe],
                keys=[ks, ke],
                fragments=[fs, fe],
                pages=[
                    {
                        "number": p.number,
                        "first_key": p.first_key,
                        "keys": p.keys,
                        "parts": p.parts,
                        "first_ms": p.first_time,
                        "last_ms": p.last_time,
                        "avail": p.avail,
                        "state": ("planned", "loaded", "unloaded", "full")[p.state]
                        if p.state < 4
                        else p.state,
                    }
                    for p in pages
                ],
                pages_range=[gs, ge],
            )
            out["tracks"][tid] = rec
        try:
            useg = Segment.open(L.user_name(stream), keep_fd=False)
            segs.append(useg)
            for s in UserPage(useg).slots():
                out["readers"].append(
                    {"slot": s.index, "pid": s.pid, "alive": pid_alive(s.pid), "wants": s.wants}
                )
        except posix_ipc.ExistentialError:
            pass
        return out
    finally:
        for seg in segs:
            seg.close()


def render(snap: dict[str, Any]) -> str:
    lines = [
        f"Stream {snap['stream']}: {'live' if snap['live'] else 'VoD'}, state {snap['state']} "
        f"({snap['progress']}), meta v{snap['version']}, writer {'alive' if snap['writer_alive'] else 'DEAD'}"
        + (", closed" if snap["closed"] else ""),
    ]
    if snap["source"]:
        lines.append(f"  source: {snap['source']}")
    for tid, t in snap["tracks"].items():
        desc = (
            f"{t['width']}x{t['height']}"
            if t["type"] == "video"
            else f"{t['rate']}Hz {t['channels']}ch"
        )
        lines.append(f"  track {tid}: {t['type']} {t['codec']} {desc}, init {t['init_size']} bytes")
        if "parts" not in t:
            lines.append("    (no track page)")
            continue
        lines.append(
            f"    {t['firstms']}..{t['lastms']} ms, bps {t['bps']} (max {t['maxbps']}), dropped {t['dropped']}"
        )
        lines.append(
            f"    parts {_ranges(*t['parts'])}, keys {_ranges(*t['keys'])}, "
            f"fragments {_ranges(*t['fragments'])}, pages {_ranges(*t['pages_range'])}"
        )
        for p in t["pages"]:
            lines.append(
                f"      page {p['number']}: keys {p['first_key']}+{p['keys']}, parts {p['parts']}, "
                f"{p['first_ms']}..{p['last_ms']} ms, {p['avail']} bytes, {p['state']}"
            )
    lines.append(f"  readers: {len(snap['readers'])}")
    for r in snap["readers"]:
        lines.append(
            f"    slot {r['slot']}: pid {r['pid']}{'' if r['alive'] else ' (dead)'} wants {r['wants']}"
        )
    return "\n".join(lines)


@click.command()
@click.argument("stream", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("-w", "--watch", is_flag=True, help="Reprint every second.")
@click.option("--list", "list_", is_flag=True, help="List the streams on the bus.")
def main(stream: str | None, as_json: bool, watch: bool, list_: bool) -> None:
    """Show STREAM's metadata, index and readers from shared memory."""
    if list_ or stream is None:
        names = list_streams()
        click.echo(json.dumps(names) if as_json else "\n".join(names))
        return
    while True:
        try:
            snap = snapshot(stream)
        except (posix_ipc.ExistentialError, ShmFormatError) as exc:
            click.echo(f"MistUtilMETA: stream {stream!r} is not on the bus ({exc})", err=True)
            sys.exit(1)
        click.echo(json.dumps(snap, default=str) if as_json else render(snap))
        if not watch:
            return
        time.sleep(1.0)
        click.echo("")


if __name__ == "__main__":
    main()
