from __future__ import annotations

from pathlib import Path

import pytest

from tests.codecs_ts.media import VARIANTS, make_ts


@pytest.fixture(scope="session")
def ts_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ts")
    return {name: make_ts(base / f"{name}.ts", name) for name in VARIANTS}
