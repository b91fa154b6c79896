"""Strict JSON reading, one home for every reader of untrusted JSON (packages, request bodies,
journal files): a repeated member name, NaN/Infinity, and (unless allowed) a non-integer number
are errors, never silently read one way by us and another by the next parser."""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _reject_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text} (amounts are integer minor units)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # json.loads keeps the last duplicate silently; two parsers could read two documents.
            raise ValueError(f"member {key!r} appears twice")
        out[key] = value
    return out


def loads_strict(data: bytes | str, *, allow_float: bool = False) -> Any:
    """Parse UTF-8 JSON, rejecting repeated member names, NaN/Infinity and (unless
    ``allow_float``) non-integer numbers. Every failure is a ValueError (UnicodeDecodeError for
    bytes that are not UTF-8), nesting too deep included."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    try:
        return json.loads(text, parse_constant=_reject_constant,
                          parse_float=float if allow_float else _reject_float,
                          object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("JSON nested too deeply to be read") from None
