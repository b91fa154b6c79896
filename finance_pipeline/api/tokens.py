"""API tokens: bearer tokens mapped to an actor and roles, stored hashed in a JSON file.

A token reads ``fpt_<token_id>_<secret>``. ``token_id`` (12 hex digits) is a public handle for
listing and revoking; the secret is 32 random bytes (base64url) and is shown once, when the
token is added. The file (``FP_API_TOKENS_FILE``, default ``$FP_VAR_DIR/api_tokens.json``,
mode 0600) keeps per token::

    {"token_id": "...", "actor": "ops:ana", "roles": ["operator"], "salt": "<16 bytes hex>",
     "hash": "<hex>", "peppered": false, "created_at_us": ..., "revoked_at_us": null}

``hash = HMAC-SHA256(key=pepper, msg=salt || secret)`` with the pepper from
``FP_API_TOKEN_PEPPER`` (empty when unset). Why not bcrypt/scrypt: the secret is 256 random
bits, so a slow hash adds nothing against guessing and would cost on every request; the salt
keeps equal secrets from hashing alike, and a pepper makes a copied file useless without the
server's environment. Changing the pepper invalidates every token hashed with the old one.

The file is also the actor directory: an actor holds the roles of its unrevoked tokens (the
API checks a journal entry's ``reviewed_by`` against it).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol

from finance_pipeline.files import write_atomic
from finance_pipeline.ledger.audit import now_us as _clock

if TYPE_CHECKING:
    from finance_pipeline.settings import Settings

log = logging.getLogger(__name__)

# "service": the pipeline's own importer identity; its entries are posted without review and
# are marked so by its actor (system:...). People's entries wait for a second person.
ROLES = ("operator", "finance-lead", "security-engineer", "super-admin", "auditor", "service")
READ_ONLY_ROLES = ("auditor",)
ENV_PEPPER = "FP_API_TOKEN_PEPPER"
PREFIX = "fpt"
_TOKEN_RE = re.compile(r"^fpt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_ACTOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,199}$")
_FORMAT = "finance-api-tokens/1"


class TokenError(ValueError):
    """Bad input to the token store, or an unreadable tokens file; the message says the fix."""


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as."""

    actor: str
    roles: frozenset[str]
    token_id: str


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    actor: str
    roles: tuple[str, ...]
    salt: str
    hash: str
    peppered: bool
    created_at_us: int
    revoked_at_us: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at_us is None

    def public(self) -> dict:
        """Everything but the salt and hash."""
        out = asdict(self)
        del out["salt"], out["hash"]
        out["roles"] = list(self.roles)
        return out


class TokenDirectory(Protocol):
    """What the API needs from a token store."""

    def authenticate(self, token: str) -> Principal | None: ...

    def actor_roles(self, actor: str) -> frozenset[str]: ...


def validate_grant(actor: object, roles: Iterable[object]) -> tuple[str, tuple[str, ...]]:
    """The actor and its roles, checked; raises TokenError naming the problem."""
    if not isinstance(actor, str) or not _ACTOR_RE.match(actor):
        raise TokenError(f"actor must be 1-200 characters of letters, digits and _ . : @ / + - "
                         f"(starting with a letter or digit), such as 'ops:ana'; got {actor!r}")
    roles = tuple(roles)
    if not roles:
        raise TokenError(f"give at least one role: {', '.join(ROLES)}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise TokenError(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
    if "auditor" in roles and len(set(roles)) > 1:
        # A read-only credential must stay read-only: no mixing with roles that change things.
        raise TokenError("auditor is read-only and cannot be combined with other roles; give the "
                         "auditor a token of its own")
    if "service" in roles and (len(set(roles)) > 1 or not actor.startswith("system:")):
        # Its entries skip the review: it must be a machine, visibly, and nothing else.
        raise TokenError("service is the pipeline's own identity: give it alone, to an actor named "
                         "system:<something> (e.g. system:import)")
    return actor, tuple(sorted(set(roles)))  # type: ignore[arg-type]


def _digest(pepper: bytes, salt: bytes, secret: str) -> str:
    return hmac.new(pepper, salt + secret.encode("ascii"), hashlib.sha256).hexdigest()


class TokenStore:
    """Tokens in a JSON file, re-read when the file changes (so ``tokens add`` needs no restart)."""

    def __init__(self, path: Path | str, *, pepper: str | bytes | None = None) -> None:
        self.path = Path(path)
        self._pepper = pepper.encode() if isinstance(pepper, str) else (pepper or b"")
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._records: dict[str, TokenRecord] = {}
        self._load(strict=True)

    @classmethod
    def from_settings(cls, settings: Settings, path: Path | str | None = None) -> TokenStore:
        """``path``, else ``FP_API_TOKENS_FILE`` (``$FP_VAR_DIR/api_tokens.json``), peppered
        with ``FP_API_TOKEN_PEPPER``."""
        return cls(path or settings.api_tokens_file, pepper=settings.api_token_pepper or None)

    # -- reading
    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _parse(self, text: str) -> dict[str, TokenRecord]:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or not isinstance(doc.get("tokens"), list):
            raise ValueError(f"expected an object with format {_FORMAT!r} and a tokens list")
        out: dict[str, TokenRecord] = {}
        for i, raw in enumerate(doc["tokens"]):
            try:
                record = TokenRecord(**{**raw, "roles": tuple(raw["roles"])})
                validate_grant(record.actor, record.roles)
            except (TypeError, KeyError, TokenError) as exc:
                raise ValueError(f"tokens[{i}]: {exc}") from None
            out[record.token_id] = record
        return out

    def _load(self, *, strict: bool = False) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        if signature is None:
            records: dict[str, TokenRecord] = {}
        else:
            try:
                records = self._parse(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                message = (f"tokens file {self.path} is unreadable ({exc}); restore it or re-add "
                           "the tokens with `finance-pipeline tokens add`")
                if strict:
                    raise TokenError(message) from None
                # Keep serving with the last good set rather than locking everyone out.
                log.error("%s; keeping the previously loaded tokens", message)
                return
        mismatched = sorted(r.token_id for r in records.values()
                            if r.active and r.peppered != bool(self._pepper))
        if mismatched:
            log.warning("tokens %s were hashed %s a pepper; they cannot authenticate unless %s is "
                        "set as when they were added", ", ".join(mismatched),
                        "without" if self._pepper else "with", ENV_PEPPER)
        self._records, self._signature = records, signature

    def records(self) -> list[TokenRecord]:
        with self._lock:
            self._load()
            return sorted(self._records.values(), key=lambda r: (r.created_at_us, r.token_id))

    def authenticate(self, token: str) -> Principal | None:
        """The principal of an active token, or None (unknown, malformed, revoked, wrong secret)."""
        m = _TOKEN_RE.match(token or "")
        if not m:
            return None
        token_id, secret = m.groups()
        with self._lock:
            self._load()
            record = self._records.get(token_id)
        if record is None or not record.active:
            return None
        expected = _digest(self._pepper, bytes.fromhex(record.salt), secret)
        if not hmac.compare_digest(expected, record.hash):
            return None
        return Principal(record.actor, frozenset(record.roles), token_id)

    def actor_roles(self, actor: str) -> frozenset[str]:
        """Roles of ``actor`` across its active tokens (empty for an unknown actor)."""
        with self._lock:
            self._load()
            return frozenset(role for r in self._records.values()
                             if r.active and r.actor == actor for role in r.roles)

    # -- writing
    @contextmanager
    def _exclusive(self) -> Iterator[dict[str, TokenRecord]]:
        """The current records under an inter-process lock; what the block leaves is written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock_file, self._lock:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._signature = None
                self._load(strict=True)
                records = dict(self._records)
                yield records
                self._write(records)
                self._signature = None
                self._load(strict=True)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write(self, records: dict[str, TokenRecord]) -> None:
        doc = {"format": _FORMAT, "tokens": [
            {**asdict(r), "roles": list(r.roles)}
            for r in sorted(records.values(), key=lambda r: (r.created_at_us, r.token_id))
        ]}
        # Hashes only, but still nobody else's business: 0600.
        write_atomic(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode=0o600)

    def add(self, actor: str, roles: Iterable[str], *, now_us: int | None = None) -> tuple[str, TokenRecord]:
        """Create a token; returns its text (shown once, never stored) and its record."""
        actor, roles = validate_grant(actor, roles)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        salt = secrets.token_bytes(16)
        with self._exclusive() as records:
            token_id = secrets.token_hex(6)
            while token_id in records:
                token_id = secrets.token_hex(6)
            record = TokenRecord(token_id, actor, roles, salt.hex(), _digest(self._pepper, salt, secret),
                                 bool(self._pepper), _clock() if now_us is None else now_us)
            records[token_id] = record
        return f"{PREFIX}_{token_id}_{secret}", record

    def revoke(self, token_id: str, *, now_us: int | None = None) -> TokenRecord:
        """Revoke a token (kept in the file, so its actor stays known to the audit trail)."""
        with self._exclusive() as records:
            record = records.get(token_id)
            if record is None:
                raise TokenError(f"no token {token_id!r}; `finance-pipeline tokens list` shows the ids")
            if record.active:
                record = TokenRecord(**{**asdict(record), "roles": record.roles,
                                        "revoked_at_us": _clock() if now_us is None else now_us})
                records[token_id] = record
        return record

    def remove(self, token_id: str) -> None:
        """Delete a token record outright (undoes an ``add`` whose audit event failed)."""
        with self._exclusive() as records:
            records.pop(token_id, None)
