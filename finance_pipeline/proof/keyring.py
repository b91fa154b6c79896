"""The verifier's trust anchor: the keyring of `proof-package.md` ("Trust").

```
{"keys": [{"key_id": "...", "role": "finance-lead", "public_key_pem": "-----BEGIN PUBLIC KEY-----\\n..."}],
 "quorum": {"min_signatures": 2, "distinct_roles": true}}
```

A verifier trusts only keys from here, never keys a package names. Loading is strict (unknown
members, duplicate key ids and quorums that can never be met are errors) because a typo in a
trust file should stop the verifier rather than quietly weaken it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEY_MEMBERS = ("key_id", "role", "public_key_pem")
QUORUM_MEMBERS = ("min_signatures", "distinct_roles")
_EXAMPLE = ('{"keys": [{"key_id": "...", "role": "...", "public_key_pem": "-----BEGIN PUBLIC KEY-----..."}], '
            '"quorum": {"min_signatures": 2, "distinct_roles": true}}')


class KeyringError(ValueError):
    """A keyring that is unreadable or does not follow the spec's shape."""


def load_public_key(pem: str | bytes, *, where: str = "public_key_pem") -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key and insist on NIST P-256 (the only curve the spec signs with)."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{where}: not a PEM public key ({exc}); expected "
                           "'-----BEGIN PUBLIC KEY-----' ... (SubjectPublicKeyInfo)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise KeyringError(f"{where}: must be an EC key on NIST P-256 (secp256r1), got {kind}")
    return key


@dataclass(frozen=True)
class KeyringKey:
    key_id: str
    role: str
    public_key_pem: str

    @cached_property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key_pem, where=f"key {self.key_id}")

    def to_dict(self) -> dict[str, str]:
        return {"key_id": self.key_id, "role": self.role, "public_key_pem": self.public_key_pem}


@dataclass(frozen=True)
class QuorumPolicy:
    min_signatures: int
    distinct_roles: bool

    def to_dict(self) -> dict[str, Any]:
        return {"min_signatures": self.min_signatures, "distinct_roles": self.distinct_roles}


@dataclass(frozen=True)
class Keyring:
    keys: tuple[KeyringKey, ...]
    quorum: QuorumPolicy
    _by_id: dict[str, KeyringKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        by_id: dict[str, KeyringKey] = {}
        for i, key in enumerate(self.keys):
            if key.key_id in by_id:
                raise KeyringError(f"keys[{i}].key_id: {key.key_id!r} appears twice; key ids must be unique")
            by_id[key.key_id] = key
            key.public_key  # noqa: B018 - fail at load time, not in the middle of a verification
        object.__setattr__(self, "_by_id", by_id)
        q = self.quorum
        reachable = len({k.role for k in self.keys}) if q.distinct_roles else len(self.keys)
        if q.min_signatures > reachable:
            what = "distinct roles" if q.distinct_roles else "keys"
            raise KeyringError(
                f"quorum.min_signatures: {q.min_signatures} can never be met with {reachable} {what} "
                "in the keyring; add keys or lower the quorum")

    def get(self, key_id: str) -> KeyringKey | None:
        return self._by_id.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> "Keyring":
        """Read a keyring from a JSON file path or an already parsed dict."""
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyringError(f"keyring {path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise KeyringError(f"keyring {path}: not UTF-8 text") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeyringError(f"keyring {path}: not JSON ({exc}); expected {_EXAMPLE}") from None
        try:
            return cls.from_dict(data)
        except KeyringError as exc:
            raise KeyringError(f"keyring {path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> "Keyring":
        if not isinstance(data, Mapping):
            raise KeyringError(f"must be a JSON object like {_EXAMPLE}")
        unknown = sorted(set(data) - {"keys", "quorum"})
        if unknown:
            raise KeyringError(f"unknown member(s) {', '.join(unknown)}; allowed: keys, quorum")
        raw_keys = data.get("keys")
        if not isinstance(raw_keys, list) or not raw_keys:
            raise KeyringError("keys: must be a non-empty list of {key_id, role, public_key_pem}")
        keys = []
        for i, raw in enumerate(raw_keys):
            at = f"keys[{i}]"
            if not isinstance(raw, Mapping):
                raise KeyringError(f"{at}: must be an object with {', '.join(KEY_MEMBERS)}")
            extra = sorted(set(raw) - set(KEY_MEMBERS))
            if extra:
                raise KeyringError(f"{at}: unknown member(s) {', '.join(extra)}; allowed: {', '.join(KEY_MEMBERS)}")
            for name in KEY_MEMBERS:
                if not isinstance(raw.get(name), str) or not raw[name]:
                    raise KeyringError(f"{at}.{name}: is required (a non-empty string)")
            load_public_key(raw["public_key_pem"], where=f"{at}.public_key_pem")
            keys.append(KeyringKey(raw["key_id"], raw["role"], raw["public_key_pem"]))
        raw_q = data.get("quorum")
        if not isinstance(raw_q, Mapping):
            raise KeyringError('quorum: is required, e.g. {"min_signatures": 2, "distinct_roles": true}')
        extra = sorted(set(raw_q) - set(QUORUM_MEMBERS))
        if extra:
            raise KeyringError(f"quorum: unknown member(s) {', '.join(extra)}; "
                               f"allowed: {', '.join(QUORUM_MEMBERS)}")
        n = raw_q.get("min_signatures")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise KeyringError(f"quorum.min_signatures: must be an integer >= 1, got {n!r}")
        distinct = raw_q.get("distinct_roles")
        if not isinstance(distinct, bool):
            raise KeyringError(f"quorum.distinct_roles: must be true or false, got {distinct!r}")
        return cls(tuple(keys), QuorumPolicy(n, distinct))

    def to_dict(self) -> dict[str, Any]:
        return {"keys": [k.to_dict() for k in self.keys], "quorum": self.quorum.to_dict()}

    def to_json(self) -> str:
        """Stable, readable JSON (keys in the spec's member order), ending with a newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")
