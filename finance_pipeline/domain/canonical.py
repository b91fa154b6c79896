"""RFC 8785 (JCS) canonical JSON for the values this project signs.

Only null, booleans, integers within +-2^53, strings, lists and dicts with string keys are
accepted: money is integer minor units, so a float reaching here is a bug and is rejected
instead of being serialised in a way two implementations might disagree on.

This is the reference writer; the fast paths that write many values at once live in
finance_pipeline/columnar/canonical.py and are tested byte-identical to it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SAFE_INT = 2**53 - 1  # I-JSON safe range: exactly representable everywhere


class CanonicalJSONError(ValueError):
    """A value cannot be represented in the canonical form."""


# A string's JSON text (the columnar writer shares it, so both escape alike).
encode_string = json.JSONEncoder(ensure_ascii=False).encode


def utf16_key(key: str) -> bytes:
    """The sort key of a member name: JCS sorts by UTF-16 code units, not by code points."""
    return key.encode("utf-16-be")


def _write(value: Any, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalJSONError(f"{path}: integer {value} is outside +-2^53")
        out.append(str(int(value)))
    elif isinstance(value, str):
        out.append(encode_string(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value, key=_check_key(path)):
            if not first:
                out.append(",")
            first = False
            out.append(encode_string(key))
            out.append(":")
            _write(value[key], out, f"{path}.{key}")
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]")
        out.append("]")
    elif isinstance(value, float):
        raise CanonicalJSONError(
            f"{path}: float {value!r} is not allowed; use integer minor units"
        )
    else:
        raise CanonicalJSONError(f"{path}: {type(value).__name__} is not JSON")


def _check_key(path: str):
    def key(k: Any) -> bytes:
        if not isinstance(k, str):
            raise CanonicalJSONError(f"{path}: member name {k!r} is not a string")
        return utf16_key(k)

    return key


def canonical_str(value: Any) -> str:
    """The canonical JSON text of ``value``."""
    out: list[str] = []
    _write(value, out, "$")
    return "".join(out)


def canonical_bytes(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value`` (what gets hashed and signed)."""
    return canonical_str(value).encode("utf-8")
