"""MistUtilMETA: print a stream's metadata, index and viewers straight from shared memory.

``MistUtilMETA <stream>`` (``-w/--watch``, ``--list``) with the shared analyser flags
(``analysers.common``): ``-D/--detail`` (0 summary only, 1 tracks, 2 rings, pages and
readers, 3 every key), ``-V/--validate`` (also walk every part and key record; with
``--watch`` on a live stream, exit 4 once its media time falls more than 2 s behind
the wall clock),
``-T/--timeout`` (wait this long for the stream to appear; ends ``--watch``),
``-g/--debug``, ``--json`` (one JSON object per snapshot, with ``problems`` and
``summary``). Exit 0: consistent; 1: problems found (dead writer, rings out of order,
INVALID stream...); 2: the stream is not on the bus. The one-line summary comes last.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click
import posix_ipc

from analysers.common import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, EXIT_TOO_SLOW

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
            "error": meta.error,
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
    if snap.get("error"):
        lines.append(f"  error: {snap['error']}")
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


PROG = "MistUtilMETA"


def check(snap: dict[str, Any], pages: dict[int, TrackPage], deep: bool) -> list[str]:
    """Problems of a snapshot; ``deep`` also walks every part and key record."""
    problems: list[str] = []
    if not snap["writer_alive"] and not snap["closed"]:
        problems.append("writer is dead and its pages were not cleaned up")
    if snap["state"] == "INVALID":
        problems.append(f"stream is INVALID: {snap.get('error') or 'no reason given'}")
    for tid, t in snap["tracks"].items():
        if "parts" not in t:
            problems.append(f"track {tid}: track page {t['page']!r} missing")
            continue
        for ring, key in (("parts", "parts"), ("keys", "keys"), ("fragments", "fragments")):
            start, end = t[key]
            if end < start or end - start > t["capacity"][ring]:
                problems.append(f"track {tid}: {ring} ring {start}..{end} out of order")
        gs, ge = t["pages_range"]
        if ge < gs or ge - gs > t["capacity"]["pages"]:
            problems.append(f"track {tid}: pages ring {gs}..{ge} out of order")
        page = pages.get(tid)
        if deep and page is not None:
            problems.extend(_walk(tid, page))
    return problems


def _walk(tid: int, page: TrackPage) -> list[str]:
    out: list[str] = []
    ps, pe, ks, ke, *_ = page.counters()
    last = None
    for n in range(ps, pe):
        p = page.part(n)
        if last is not None and p.dts < last:
            out.append(f"track {tid}: part {n} dts {p.dts} < previous {last}")
            break
        if not ks <= p.key < max(ke, ks + 1):
            out.append(f"track {tid}: part {n} names key {p.key} outside {ks}..{ke - 1}")
            break
        last = p.dts
    prev = None
    key_infos = page.keys()  # TrackPage.keys(): the key records, not a dict view
    for k in key_infos:
        if prev is not None and k.time < prev:
            out.append(f"track {tid}: key {k.number} time {k.time} < previous {prev}")
            break
        if k.number > ks and not ps <= k.first_part <= pe:
            out.append(
                f"track {tid}: key {k.number} starts at part {k.first_part} outside {ps}..{pe}"
            )
            break
        prev = k.time
    return out


def summary_line(snap: dict[str, Any], problems: list[str]) -> str:
    status = "valid" if not problems else f"{len(problems)} problem(s)"
    kind = "live" if snap["live"] else "vod"
    return (
        f"{PROG}: {status} stream={snap['stream']} type={kind} state={snap['state']} "
        f"tracks={len(snap['tracks'])} readers={len(snap['readers'])}"
    )


def _inspect(
    stream: str, deep: bool, list_keys: bool
) -> tuple[dict[str, Any], list[str], dict[int, list[str]]]:
    """Snapshot + problems (+ each track's keys as text when ``list_keys``)."""
    snap = snapshot(stream)
    pages: dict[int, TrackPage] = {}
    segs: list[Segment] = []
    keys: dict[int, list[str]] = {}
    try:
        for tid, t in snap["tracks"].items():
            if "parts" not in t:
                continue
            try:
                seg = Segment.open(t["page"], keep_fd=False)
            except posix_ipc.ExistentialError:
                continue
            segs.append(seg)
            pages[tid] = TrackPage(seg)
            if not list_keys:
                continue
            key_infos = pages[tid].keys()
            keys[tid] = [
                f"key {k.number}: {k.time} ms, parts {k.first_part}+{k.parts}, {k.size} bytes, "
                f"{k.duration} ms, page {k.page}"
                for k in key_infos
            ]
        problems = check(snap, pages, deep)
    finally:
        pages.clear()
        for seg in segs:
            seg.close()
    return snap, problems, keys


def _show(snap: dict[str, Any], problems: list[str], keys: dict[int, list[str]], detail: int,
          as_json: bool) -> None:  # fmt: skip
    line = summary_line(snap, problems)
    if as_json:
        rec = dict(snap, problems=problems, summary=line) if detail else {"summary": line}
        click.echo(json.dumps(rec, default=str))
        return
    if detail:
        text = render(snap)
        if detail < 2:  # tracks only: drop the ring, page and reader lines
            text = "\n".join(x for x in text.splitlines() if not x.startswith("    "))
        click.echo(text)
        if detail >= 3:
            for tid, lines in keys.items():
                click.echo(f"  track {tid} keys:")
                for x in lines:
                    click.echo("    " + x)
    for p in problems:
        click.echo(f"PROBLEM: {p}")
    click.echo(line)


@click.command(help="Show STREAM's metadata, index and readers from shared memory.")
@click.argument("stream", required=False)
@click.option("-D", "--detail", type=click.IntRange(0, 10), default=2, show_default=True)
@click.option(
    "-V", "--validate", is_flag=True,
    help="Also check every part and key record; with -w, exit 4 when a live stream lags.",
)  # fmt: skip
@click.option(
    "-T", "--timeout", type=float, default=0.0,
    help="Wait this long for the stream to appear; ends --watch (0: never).",
)  # fmt: skip
@click.option("-g", "--debug", type=click.IntRange(0, 10), default=3)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per snapshot.")
@click.option("-w", "--watch", is_flag=True, help="Reprint every second.")
@click.option("--list", "list_", is_flag=True, help="List the streams on the bus.")
def main(
    stream: str | None,
    detail: int,
    validate: bool,
    timeout: float,
    debug: int,
    as_json: bool,
    watch: bool,
    list_: bool,
) -> None:
    logging.basicConfig(level=logging.DEBUG if debug >= 4 else logging.WARNING)
    if list_ or stream is None:
        names = list_streams()
        click.echo(json.dumps(names) if as_json else "\n".join(names))
        return
    started = time.monotonic()
    worst = EXIT_OK
    paced: tuple[float, int] | None = None  # (wall, media ms) of the first live snapshot
    while True:
        try:
            snap, problems, keys = _inspect(stream, validate, detail >= 3 and not as_json)
        except (posix_ipc.ExistentialError, ShmFormatError) as exc:
            if time.monotonic() - started < timeout:
                time.sleep(0.1)
                continue
            click.echo(f"{PROG}: stream {stream!r} is not on the bus ({exc})", err=True)
            click.echo(f"{PROG}: unreadable source stream={stream} (not on the bus)")
            sys.exit(EXIT_ERROR)
        media = max((t.get("lastms", 0) for t in snap["tracks"].values()), default=0)
        now = time.monotonic()
        if validate and watch and snap["live"] and not snap["closed"]:
            if paced is None:
                paced = (now, media)
            elif (now - paced[0]) - (media - paced[1]) / 1000 > 2.0:
                lag = now - paced[0] - (media - paced[1]) / 1000
                problems.append(f"data arrives too slowly: media time {lag:.1f} s behind")
                _show(snap, problems, keys, detail, as_json)
                sys.exit(EXIT_TOO_SLOW)
        _show(snap, problems, keys, detail, as_json)
        if problems:
            worst = EXIT_PROBLEMS
        if not watch or (timeout and time.monotonic() - started >= timeout):
            sys.exit(worst)
        time.sleep(1.0)
        if not as_json:
            click.echo("")


if __name__ == "__main__":
    main()
