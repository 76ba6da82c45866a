"""The live buffer's triggers: STREAM_BUFFER and LIVE_BANDWIDTH (reference 6.6, 7.2).

:class:`BufferHealth` is the sans-IO part: it is told every packet the buffer writes
(``packet(track, dts, keyframe)``, a few integer operations) and keeps, per track, the
keys of the DVR window (start, duration, frame count) cut the way the bus cuts them
(video on keyframes, other tracks every ``AUDIO_KEY_INTERVAL_MS``) and the fragment
count. From that it builds MistServer's buffer health JSON::

    {"H264_320x240_25fps": {"codec": "H264", "kbits": 312, "width": 320, ...,
                            "keys": {"ms_min", "ms_max", "frame_ms_min", "frame_ms_max",
                                     "frames_min", "frames_max"}},
     "AAC_2ch_44100hz": {...}, "issues": "unstable connection (...)! "}

``issues`` is present only when something is wrong: a frame longer than 500 ms, fewer
than 6 frames in a key, an H264+AAC stream missing one of them (HLS needs both), and --
our addition, since a stalled publisher leaves no mark in the timestamps -- no packet
for :data:`DRY_AFTER_MS` of wall time.

:meth:`BufferHealth.state` turns successive evaluations into STREAM_BUFFER states:
FULL once every track has :data:`FRAG_BOOT` fragments, then DRY when issues appear and
RECOVER when they are gone; :class:`BufferEvents` fires them (and EMPTY when the buffer
ends), and LIVE_BANDWIDTH whenever the stream's total bytes/s changes at a keyframe. A
LIVE_BANDWIDTH handler answering false stops the buffer (MistServer: "bandwidth limit
reached"); the controller fires a handler only when the bytes/s reach its ``params``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common import control
from common.defaults import AUDIO_KEY_INTERVAL_MS

FRAG_BOOT = 3  # fragments on every track before the buffer is FULL (MistServer's value)
DRY_AFTER_MS = 3000  # wall time without a packet that counts as an issue
LONG_FRAME_MS = 500
MIN_KEY_FRAMES = 6
MAX_KEYS = 512  # per track, a bound on the window kept whatever the DVR setting
TICK_S = 1.0


@dataclass
class _TrackKeys:
    is_video: bool
    keys: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=MAX_KEYS))
    key_start: int | None = None  # the open key: start ms and frames so far
    key_frames: int = 0
    frag_start: int | None = None
    frags: int = 0
    last_dts: int = 0


class BufferHealth:
    """Health of a live buffer from the packets written to it (no I/O, no clock)."""

    def __init__(self, dvr_ms: int, fragment_ms: int) -> None:
        self.dvr_ms = dvr_ms
        self.fragment_ms = fragment_ms
        self.tracks: dict[int, _TrackKeys] = {}
        self.last_packet_at: float | None = None  # wall clock (s), set by the caller
        self.full = False
        self.dry = False

    def packet(self, track: int, dts: int, keyframe: bool, is_video: bool) -> bool:
        """Account one packet; True when it started a key on a video track (on any
        track while the stream has no video)."""
        t = self.tracks.get(track)
        if t is None:
            t = self.tracks[track] = _TrackKeys(is_video)
        t.last_dts = dts
        start = t.key_start
        if start is None or (
            (keyframe if is_video else dts - start >= AUDIO_KEY_INTERVAL_MS) and dts > start
        ):
            if start is not None:
                t.keys.append((start, dts - start, t.key_frames))
                while t.keys and t.keys[0][0] < dts - self.dvr_ms:
                    t.keys.popleft()
            t.key_start, t.key_frames = dts, 0
            if t.frag_start is None or dts - t.frag_start >= self.fragment_ms:
                t.frag_start = dts
                t.frags += 1
            t.key_frames += 1
            return is_video or not any(x.is_video for x in self.tracks.values())
        t.key_frames += 1
        return False

    def fragments(self) -> int:
        return min((t.frags for t in self.tracks.values()), default=0)

    def details(self, metas: dict[int, Any], bps: dict[int, int], now: float) -> dict[str, Any]:
        """MistServer's buffer health JSON (see the module docstring)."""
        out: dict[str, Any] = {}
        issues: list[str] = []
        codecs = set()
        for tid, t in sorted(self.tracks.items()):
            meta = metas.get(tid)
            codec = getattr(meta, "codec", "") or "?"
            codecs.add(codec)
            entry: dict[str, Any] = {"codec": codec, "kbits": bps.get(tid, 0) * 8 // 1024}
            done = [k for k in t.keys if k[1] > 0]
            if done:
                frame_ms = [dur // max(1, n) for _, dur, n in done]
                frames = [n for _, _, n in done]
                entry["keys"] = {
                    "ms_min": min(d for _, d, _ in done),
                    "ms_max": max(d for _, d, _ in done),
                    "frame_ms_min": min(frame_ms),
                    "frame_ms_max": max(frame_ms),
                    "frames_min": min(frames),
                    "frames_max": max(frames),
                }
                if max(frame_ms) > LONG_FRAME_MS:
                    issues.append(f"unstable connection ({max(frame_ms)}ms {codec} frame)! ")
                if min(frames) < MIN_KEY_FRAMES:
                    issues.append(f"unstable connection ({min(frames)} {codec} frames in key)! ")
            if t.is_video and meta is not None:
                entry.update(width=meta.width, height=meta.height, fpks=meta.fpks)
            elif meta is not None and meta.type == "audio":
                entry.update(rate=meta.rate, channels=meta.channels)
            out[_identifier(tid, codec, entry, out)] = entry
        if ("AAC" in codecs or "H264" in codecs) and len(self.tracks) > 1:
            if "AAC" not in codecs:
                issues.append("HLS no audio!")
            if "H264" not in codecs:
                issues.append("HLS no video!")
        if self.last_packet_at is not None:
            quiet_ms = int((now - self.last_packet_at) * 1000)
            if quiet_ms >= DRY_AFTER_MS:
                issues.append(f"no data for {quiet_ms}ms! ")
        if issues:
            out["issues"] = "".join(issues)
        return out

    def state(self, details: dict[str, Any]) -> str | None:
        """The STREAM_BUFFER state to announce now (None: no change)."""
        if self.fragments() < FRAG_BOOT:
            return None
        dry = "issues" in details
        if not self.full:
            self.full, self.dry = True, dry
            return "FULL"
        if dry != self.dry:
            self.dry = dry
            return "DRY" if dry else "RECOVER"
        return None


def _identifier(tid: int, codec: str, entry: dict[str, Any], taken: dict[str, Any]) -> str:
    """A readable track key as MistServer's (codec and format), unique within the JSON."""
    if "width" in entry:
        fps = round(entry.get("fpks", 0) / 1000)
        name = f"{codec}_{entry['width']}x{entry['height']}" + (f"_{fps}fps" if fps else "")
    elif "rate" in entry:
        name = f"{codec}_{entry['channels']}ch_{entry['rate']}hz"
    else:
        name = codec
    return name if name not in taken else f"{name}_{tid}"


class BufferEvents:
    """Fires the buffer's triggers for ``stream``; ``writer`` is its ``StreamWriter``.

    Synchronous, for the buffer's ``selectors`` loop: :meth:`packet` per packet,
    :meth:`tick` after every poll round (a check at most once per :data:`TICK_S`).
    LIVE_BANDWIDTH waits for its handler, so it runs in a short-lived thread; the rest
    is fire and forget. Triggers live in the controller: without one nothing is sent
    (and ``common.triggers``, which brings asyncio along, is imported on first use)."""

    def __init__(
        self,
        stream: str,
        writer: Any,
        dvr_ms: int,
        fragment_ms: int,
        stop: Callable[[str], None],
        log: Any,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream
        self.writer = writer
        self.health = BufferHealth(dvr_ms, fragment_ms)
        self.stop = stop  # asks the buffer to end (LIVE_BANDWIDTH said no); thread-safe
        self.log = log
        self.enabled = control.under_controller() if enabled is None else enabled
        self.last_bps = 0
        self._bandwidth: threading.Thread | None = None
        self._video: dict[int, bool] = {}
        self._checked = 0.0

    def packet(self, track: int, dts: int, keyframe: bool) -> None:
        """Called for every packet written (the buffer's hot path: kept small)."""
        video = self._video.get(track)
        if video is None:
            meta = self.writer.tracks.get(track)
            video = self._video[track] = meta is not None and meta.type == "video"
        self.health.last_packet_at = time.time()
        if self.health.packet(track, dts, keyframe, video):
            self._keyframe()

    def _keyframe(self) -> None:
        bps = sum(self.writer.stats(tid)[2] for tid in self.writer.tracks)
        if bps != self.last_bps:
            self.last_bps = bps
            if self.enabled and (self._bandwidth is None or not self._bandwidth.is_alive()):
                self._bandwidth = threading.Thread(
                    target=self._live_bandwidth, args=(bps,), name="live-bandwidth", daemon=True
                )
                self._bandwidth.start()
        self.check()

    def _live_bandwidth(self, bps: int) -> None:
        from common import triggers

        names = triggers.configured_names_sync()
        if names is not None and "LIVE_BANDWIDTH" not in names:
            return
        if not triggers.allowed("LIVE_BANDWIDTH", [self.stream, str(bps)], self.stream):
            self.log.warning("shutting down the buffer: bandwidth limit reached (%d B/s)", bps)
            self.stop("LIVE_BANDWIDTH refused the stream's bandwidth")

    def tick(self, mono: float) -> None:
        if mono - self._checked >= TICK_S:
            self._checked = mono
            self.check()

    def check(self, now: float | None = None) -> None:
        """Evaluate the health and fire STREAM_BUFFER on a state change."""
        health = self.health
        if not health.tracks or health.fragments() < FRAG_BOOT:
            return
        tracks = self.writer.tracks
        bps = {tid: self.writer.stats(tid)[2] for tid in tracks}
        details = health.details(tracks, bps, time.time() if now is None else now)
        state = health.state(details)
        if state is not None:
            self.log.info("buffer %s%s", state, f": {details['issues']}" if state == "DRY" else "")
            self._fire([self.stream, state, json.dumps(details, sort_keys=True)])

    def empty(self) -> None:
        """The buffer ends: STREAM_BUFFER EMPTY (also when it never was FULL)."""
        self._fire([self.stream, "EMPTY"])

    def _fire(self, payload: list[str]) -> None:
        if self.enabled:
            from common import triggers

            triggers.fire_nowait("STREAM_BUFFER", payload, self.stream)

    def may_unload(self, input_type: str, reason: str) -> bool:
        """STREAM_UNLOAD before the buffer exits idle: False when a handler keeps it."""
        if not self.enabled:
            return True
        from common import triggers

        return triggers.unload_allowed(self.stream, input_type, reason)
