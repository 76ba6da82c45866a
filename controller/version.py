"""Version reported by ``-v`` and the ``version`` API command."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("mistpy")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.0.0"
RELEASE = "mistpy"
