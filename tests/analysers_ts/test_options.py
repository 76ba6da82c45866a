"""Bad option values are usage errors (exit 2, a message naming the option), never a
traceback: -P that is not a PID, -R into a directory that does not exist (TS, RTMP, HLS)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from analysers import hls, rtmp, ts


@pytest.mark.parametrize(
    ("main", "source", "args", "message"),
    [
        (ts.main, "in.ts", ["-P", "abc"], "'abc' is not a PID"),
        (ts.main, "in.ts", ["-P", "9000"], "PID 9000 is outside 0..8191"),
        (ts.main, "in.ts", ["-R", "{missing}/x.ts"], "does not exist"),
        (rtmp.main, "rtmp://127.0.0.1:9/live/x", ["-R", "{missing}/x.flv"], "does not exist"),
        (hls.main, "index.m3u8", ["-R", "{missing}/x.ts"], "does not exist"),
    ],
)
def test_bad_values_are_usage_errors(
    main: click.Command, source: str, args: list[str], message: str, tmp_path: Path
) -> None:
    argv = [source, *(a.format(missing=tmp_path / "missing") for a in args)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert message in result.output, result.output


def test_good_pid_values(ts_files: dict[str, Path], tmp_path: Path) -> None:
    raw = tmp_path / "pes.bin"
    for value in ("256", "0x100"):
        result = CliRunner().invoke(
            ts.main, [str(ts_files["h264_aac"]), "-D", "0", "-P", value, "-R", str(raw)]
        )
        assert result.exit_code == 0, result.output
        assert raw.stat().st_size > 0
