"""Real controller fixtures (shared with tests/controller) and real trigger handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controller.conftest import mist_factory  # noqa: F401 - fixture re-export
from tests.triggers.handlers import HttpHandler, ScriptHandler, serve_http


@pytest.fixture
def script(tmp_path: Path) -> ScriptHandler:
    return ScriptHandler(tmp_path / "handler")


@pytest.fixture
def http_handler() -> Iterator[HttpHandler]:
    yield from serve_http()
