"""Text checks shared by every parser that reads numbers from peers."""

from __future__ import annotations


def is_decimal(text: str) -> bool:
    """True for a non-empty run of ASCII digits only.

    ``str.isdigit`` also accepts digits such as '²' that ``int()`` then rejects with a bare
    ValueError, so parsers of untrusted text use this instead.
    """
    return text.isascii() and text.isdigit()
