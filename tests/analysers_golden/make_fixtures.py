"""Make the small media fixtures the golden tests read (run by hand, then commit).

``python tests/analysers_golden/make_fixtures.py`` writes ``fixtures/``: two seconds of
64x64 testsrc at 5 fps (a keyframe every second) with a 440 Hz tone, in several codecs
and muxer options. Encoders run single-threaded with ffmpeg's bitexact flags so a rerun
with the same ffmpeg gives the same bytes; another ffmpeg version may differ, and then
the goldens must be regenerated too (``MIST_UPDATE_GOLDEN=1``, see docs/analysers.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "fixtures"
SECONDS = 2
VIDEO = f"testsrc=size=64x64:rate=5:duration={SECONDS}"
AUDIO = f"sine=frequency=440:sample_rate=44100:duration={SECONDS}"
EXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
X264 = ["-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-g", "5", "-bf", "2",
        "-pix_fmt", "yuv420p", "-x264-params", "keyint=5:min-keyint=5:scenecut=0"]  # fmt: skip
X265 = ["-c:v", "libx265", "-preset", "veryfast", "-g", "5", "-pix_fmt", "yuv420p",
        "-x265-params", "pools=none:frame-threads=1:keyint=5:min-keyint=5:log-level=error"]  # fmt: skip
VP9 = ["-c:v", "libvpx-vp9", "-threads", "1", "-g", "5", "-deadline", "realtime", "-b:v", "100k"]
OPUS = ["-c:a", "libopus", "-b:a", "24k", "-ac", "1", "-ar", "48000"]
AAC = ["-c:a", "aac", "-b:a", "32k", "-ac", "1"]

# name -> (video encoder, audio encoder, muxer options)
FIXTURES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "h264_aac.flv": (X264, AAC, ["-f", "flv"]),
    "h264_aac.ts": (X264, AAC, ["-f", "mpegts"]),
    "hevc_mp3.ts": (X265, ["-c:a", "libmp3lame", "-b:a", "32k", "-ac", "1"], ["-f", "mpegts"]),
    "h264_aac.mp4": (X264, AAC, ["-f", "mp4"]),
    "h264_aac_faststart.mp4": (X264, AAC, ["-f", "mp4", "-movflags", "+faststart"]),
    "h264_aac_frag.mp4": (
        X264,
        AAC,
        ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof"],
    ),
    "hevc_ac3.mkv": (X265, ["-c:a", "ac3", "-b:a", "64k", "-ac", "1"], ["-f", "matroska"]),
    "vp9_opus.webm": (VP9, OPUS, ["-f", "webm"]),
}
HLS = "hls/h264_aac.m3u8"


def ffmpeg(video: list[str], audio: list[str], mux: list[str], out: Path) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", AUDIO,
           *video, *audio, *EXACT, "-map_metadata", "-1", *mux, str(out)]  # fmt: skip
    subprocess.run(cmd, check=True)


def main() -> None:
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed")
    HERE.mkdir(exist_ok=True)
    for name, (video, audio, mux) in FIXTURES.items():
        ffmpeg(video, audio, mux, HERE / name)
    hls = HERE / HLS
    hls.parent.mkdir(exist_ok=True)
    for old in hls.parent.glob("*.ts"):  # keep the golden sidecars
        old.unlink()
    ffmpeg(X264, AAC, ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
                       "-hls_segment_filename", str(hls.parent / "seg%d.ts")], hls)  # fmt: skip
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and not path.name.endswith((".json", ".txt")):
            print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
