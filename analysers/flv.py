"""MistAnalyserFLV: print and check the tags of an FLV file or stream.

Detail levels: 0 summary only, 1 header, codec configs, metadata and the timeline,
2 (default) every tag, 3 also the first payload bytes. Problems found: timestamps
going backwards or jumping, PreviousTagSize mismatches, tags of the wrong size,
truncation, undecodable bodies.
"""

from __future__ import annotations

from typing import Any

import click

from analysers.common import Analyser, make_main
from mistcodecs import flv
from mistcodecs.errors import FormatError

FILTERS = {"8": 8, "audio": 8, "9": 9, "video": 9, "18": 18, "meta": 18, "script": 18}
GAP_MS = 5000  # a jump larger than this between tags of one type is reported


def describe_avcc(init: bytes) -> dict[str, Any]:
    if len(init) < 7 or init[0] != 1:
        return {"error": "not an AVCDecoderConfigurationRecord"}
    return {
        "profile": init[1],
        "compat": init[2],
        "level": init[3],
        "nal_length_size": (init[4] & 3) + 1,
        "sps": init[5] & 0x1F,
    }


def describe_hvcc(init: bytes) -> dict[str, Any]:
    if len(init) < 23 or init[0] != 1:
        return {"error": "not an HEVCDecoderConfigurationRecord"}
    return {
        "profile": init[1] & 0x1F,
        "tier": init[1] >> 5 & 1,
        "level": init[12],
        "nal_length_size": (init[21] & 3) + 1,
        "arrays": init[22],
    }


def describe_config(codec: str, init: bytes) -> dict[str, Any]:
    if codec == "H264":
        return describe_avcc(init)
    if codec == "HEVC":
        return describe_hvcc(init)
    if codec == "AAC":
        try:
            aot, rate, channels = flv.parse_audio_specific_config(init)
        except FormatError as exc:
            return {"error": str(exc)}
        return {"object_type": aot, "rate": rate, "channels": channels}
    if codec == "AV1" and len(init) >= 4:
        return {"profile": init[1] >> 5, "level": init[1] & 0x1F}
    if codec == "opus" and len(init) >= 19:
        return {"channels": init[9], "pre_skip": int.from_bytes(init[10:12], "little")}
    return {"bytes": len(init)}


class _TypeStats:
    def __init__(self) -> None:
        self.count = 0
        self.frames = 0
        self.bytes = 0
        self.first: int | None = None
        self.last: int | None = None
        self.keyframes: list[int] = []


class FlvAnalyser(Analyser):
    name = "MistAnalyserFLV"

    def __init__(
        self, detail: int, as_json: bool, filter: str | None = None, **options: Any
    ) -> None:
        super().__init__(detail, as_json, **options)
        self.reader = flv.FlvTagReader()
        self.decoder = flv.FlvTagDecoder()
        self.only: int | None = None
        if filter:
            if filter.lower() not in FILTERS:
                raise click.BadParameter(
                    f"unknown tag type {filter!r} (8/9/18 or audio/video/meta)"
                )
            self.only = FILTERS[filter.lower()]
        self.stats: dict[int, _TypeStats] = {8: _TypeStats(), 9: _TypeStats(), 18: _TypeStats()}
        self.total_bytes = 0

    def feed(self, data: bytes) -> None:
        self.total_bytes += len(data)
        for item in self.reader.feed(data):
            if isinstance(item, flv.FlvHeader):
                self.emit(
                    f"FLV header: version {item.version}, audio={item.has_audio}, video={item.has_video}",
                    {
                        "header": {
                            "version": item.version,
                            "audio": item.has_audio,
                            "video": item.has_video,
                        }
                    },
                    1,
                )
            else:
                self.tag(item)

    def tag(self, tag: flv.FlvTag) -> None:
        st = self.stats[tag.type]
        name = flv.TAG_TYPES[tag.type]
        if st.last is not None:
            if tag.timestamp < st.last:
                self.problem(
                    f"{name} timestamp goes backwards at byte {tag.offset}: {st.last} -> {tag.timestamp} ms"
                )
            elif tag.timestamp - st.last > GAP_MS:
                self.problem(
                    f"{name} timestamp jumps {tag.timestamp - st.last} ms at byte {tag.offset}"
                )
        if not tag.prev_size_ok:
            self.problem(
                f"bad PreviousTagSize {tag.prev_size} after the {name} tag at byte {tag.offset} (expected {11 + len(tag.body)})"
            )
        st.count += 1
        st.bytes += len(tag.body)
        st.first = tag.timestamp if st.first is None else st.first
        st.last = tag.timestamp
        if tag.type != flv.TAG_SCRIPT:
            self.media_ms = tag.timestamp
        record: dict[str, Any] = {
            "offset": tag.offset,
            "type": name,
            "size": len(tag.body),
            "timestamp": tag.timestamp,
        }
        show = self.only is None or self.only == tag.type
        try:
            self._describe(tag, record, show)
        except FormatError as exc:
            self.problem(f"{name} tag at byte {tag.offset}: {exc}")
            return
        if show:
            text = f"@{tag.offset} {name} ts={tag.timestamp} size={len(tag.body)}" + "".join(
                f" {k}={v}"
                for k, v in record.items()
                if k not in ("offset", "type", "size", "timestamp", "config", "metadata")
            )
            self.emit(text, record, 2)
            if self.detail >= 3:
                self.emit(
                    "  " + tag.body[:32].hex(" "),
                    {"offset": tag.offset, "head": tag.body[:32].hex()},
                    3,
                )

    def _describe(self, tag: flv.FlvTag, record: dict[str, Any], show: bool) -> None:
        if tag.type == flv.TAG_VIDEO:
            v = flv.parse_video_body(tag.body, tag.offset)
            record.update(
                codec=v.codec,
                kind=v.kind,
                keyframe=v.frame_type == 1,
                cts=v.cts,
                enhanced=v.enhanced,
            )
            if v.kind == "frame":
                self.stats[9].frames += 1
                if v.frame_type == 1:
                    self.stats[9].keyframes.append(tag.timestamp)
            if v.kind == "config":
                self._config(record, v.codec, v.payload, show)
        elif tag.type == flv.TAG_AUDIO:
            a = flv.parse_audio_body(tag.body, tag.offset)
            record.update(codec=a.codec, kind=a.kind)
            if a.kind == "frame":
                self.stats[8].frames += 1
            if not a.enhanced:
                record.update(rate=a.rate, bits=a.size, channels=a.channels)
            if a.kind == "config":
                self._config(record, a.codec, a.payload, show)
        else:
            values = self.decoder.script(tag.body)
            record["name"] = values[0] if values else ""
            if values and values[0] == "onMetaData":
                record["metadata"] = self.decoder.metadata
                if show:
                    self.emit(
                        f"onMetaData: {self.decoder.metadata}",
                        {"metadata": self.decoder.metadata},
                        1,
                    )
        self.decoder.tag(tag)  # keeps track state in step (drops frames before configs)

    def _config(
        self, record: dict[str, Any], codec: str, payload: bytes | memoryview, show: bool
    ) -> None:
        record["config"] = describe_config(codec, bytes(payload))
        if show:
            self.emit(
                f"{codec} config: {record['config']}",
                {"config": record["config"], "codec": codec},
                1,
            )

    def finish(self) -> None:
        try:
            self.reader.end()
        finally:
            self._timeline()

    def _timeline(self) -> None:
        v, a = self.stats[9], self.stats[8]
        firsts = [s.first for s in (v, a) if s.first is not None]
        lasts = [s.last for s in (v, a) if s.last is not None]
        duration = (max(lasts) - min(firsts)) if firsts and lasts else 0
        self.summary["video_frames"] = v.frames
        self.summary["audio_frames"] = a.frames
        self.summary["keyframes"] = len(v.keyframes)
        self.summary["duration_ms"] = duration
        if duration:
            self.summary["kbps"] = round((v.bytes + a.bytes) * 8 / duration, 1)
        if len(v.keyframes) >= 2:
            self.summary["keyframe_interval_ms"] = round(
                (v.keyframes[-1] - v.keyframes[0]) / (len(v.keyframes) - 1)
            )
        if v.first is not None and a.first is not None:
            self.summary["av_start_diff_ms"] = a.first - v.first
        self.emit(
            "timeline: " + " ".join(f"{k}={val}" for k, val in self.summary.items()),
            {"timeline": self.summary},
            1,
        )


main = make_main(
    FlvAnalyser,
    "Analyse an FLV file or stream: header, tags, codec configs, onMetaData, timing problems.",
    [
        click.option(
            "-F",
            "--filter",
            "filter",
            default=None,
            help="Only show tags of this type: 8/audio, 9/video, 18/meta.",
        )
    ],
)

if __name__ == "__main__":
    main()
