"""HLS attribute lists (RFC 8216 section 4.2): ``KEY=value,KEY="quoted",...``.

Values are kept as strings on parse; the caller converts them with the small
typed readers below, which raise :class:`FormatError` naming the attribute and
the line, so every playlist error says where it is.
"""

from __future__ import annotations

import re

from common.errors import UsageError
from common.text import is_decimal
from mistcodecs.errors import FormatError

# One attribute: an upper-case name, '=', then a quoted string or a run without commas.
_ATTR = re.compile(r'\s*([A-Z0-9-]+)=("[^"\r\n]*"|[^,"\r\n]*)\s*(,|$)')


def parse_attrs(text: str, line_no: int) -> dict[str, str]:
    """Split an attribute list; quoted values lose their quotes."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _ATTR.match(text, pos)
        if m is None:
            raise FormatError(
                f"line {line_no}: bad attribute list at column {pos + 1}: {text[pos : pos + 30]!r}"
            )
        name, value = m.group(1), m.group(2)
        if name in out:
            raise FormatError(f"line {line_no}: attribute {name} given twice")
        out[name] = value[1:-1] if value.startswith('"') else value
        if m.end() == pos:  # pragma: no cover - the regex always consumes
            break
        pos = m.end()
        if m.group(3) == "" and pos < len(text):
            raise FormatError(f"line {line_no}: junk after attribute {name}")
    return out


def format_attrs(items: list[tuple[str, str | int | float | bool | None, bool]]) -> str:
    """Render (name, value, quoted) triples, skipping ``None`` values.
    Booleans render as the enumerated string YES (``False`` is left out)."""
    parts: list[str] = []
    for name, value, quoted in items:
        if value is None or value is False:
            continue
        if value is True:
            text = "YES"
        elif isinstance(value, float):
            text = format_decimal(value)
        else:
            text = str(value)
        if quoted:
            if '"' in text or "\n" in text or "\r" in text:
                raise UsageError(f"attribute {name} cannot hold quotes or line breaks: {text!r}")
            text = f'"{text}"'
        parts.append(f"{name}={text}")
    return ",".join(parts)


def format_decimal(value: float) -> str:
    """Seconds with at most 3 decimals, no trailing zeros beyond one ("2.0", "0.333")."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def read_int(attrs: dict[str, str], name: str, line_no: int) -> int | None:
    value = attrs.get(name)
    if value is None:
        return None
    if not is_decimal(value):
        raise FormatError(f"line {line_no}: {name}={value!r} is not a decimal integer")
    return int(value)


def read_float(attrs: dict[str, str], name: str, line_no: int) -> float | None:
    value = attrs.get(name)
    if value is None:
        return None
    return to_float(value, f"{name}", line_no)


def to_float(value: str, what: str, line_no: int) -> float:
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]*)?", value.strip()):
        raise FormatError(f"line {line_no}: {what} {value!r} is not a decimal number")
    return float(value)


def read_bool(attrs: dict[str, str], name: str, line_no: int) -> bool:
    value = attrs.get(name)
    if value is None:
        return False
    if value not in ("YES", "NO"):
        raise FormatError(f"line {line_no}: {name}={value!r} must be YES or NO")
    return value == "YES"


def require(attrs: dict[str, str], name: str, tag: str, line_no: int) -> str:
    if name not in attrs:
        raise FormatError(f"line {line_no}: {tag} lacks the required {name} attribute")
    return attrs[name]
