from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from shm.cleanup import stream_page_names


@pytest.fixture
def stream() -> Iterator[str]:
    """A unique stream name; the test must leave none of its pages behind."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    left = stream_page_names(name)
    for n in left:  # do not leak into other tests, but still fail
        try:
            os.unlink(os.path.join("/dev/shm", n))
        except FileNotFoundError:
            pass
    assert not left, f"pages left behind: {left}"
