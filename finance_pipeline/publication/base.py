"""Publisher contract: write-once storage of proof packages, one package per UTC day.

Layout: `<prefix>/YYYY/MM/DD/<proof_id>/<file>` (prefix `proofs` by default).

Crash safety: a publisher writes the data files first and `proof_package.json` LAST, so a
prefix without `proof_package.json` is an interrupted publication. Readers (`read`,
`existing_for_day`, the verifier) treat such a prefix as incomplete, never as a package.
Re-running the same export resumes it (identical files are skipped, missing ones written).

One package per day: a publisher refuses a package when the day already has a complete one
with another proof id (AlreadyPublishedError). Who may publish a day at all is decided before
the first write, by the day's seal in the ledger database (ledger/periods.py), not by a file in
the store: a claim object under Object Lock retention could never be taken back after a crash.
Two writers of the same proof id finish as one: `proof_package.json` written by the other,
with the same statement (its signatures differ, ECDSA being randomised), is accepted as is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

from finance_pipeline.proof.package import PROOF_FILE

DEFAULT_PREFIX = "proofs"
_PROOF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PublicationError(Exception):
    """Publishing or reading a package failed; the message says what and how to fix it."""


class AlreadyPublishedError(PublicationError):
    """The day already has a (different) published package."""

    def __init__(self, day: str, existing_proof_id: str, new_proof_id: str, location: str):
        self.day = day
        self.existing_proof_id = existing_proof_id
        self.new_proof_id = new_proof_id
        self.location = location
        super().__init__(
            f"ledger changed since proof {existing_proof_id} was published for {day} "
            f"(at {location}); the new package would be {new_proof_id}. Published proofs are "
            "immutable: post a correcting journal entry in an open day instead of editing the past, "
            "or investigate who changed the ledger for this day")


@dataclass(frozen=True)
class PublishResult:
    location: str
    created: bool  # False: the identical package was already there (no-op)


@runtime_checkable
class Publisher(Protocol):
    def location(self, day: str, proof_id: str) -> str:
        """Where the package of `day` with `proof_id` lives (a path or s3:// URI)."""

    def publish(self, day: str, proof_id: str, files: dict[str, bytes]) -> PublishResult:
        """Write the package once; identical re-publish is a no-op."""

    def read(self, location: str) -> dict[str, bytes]:
        """All files of a complete package; PublicationError when incomplete or missing."""

    def existing_for_day(self, day: str) -> list[str]:
        """Proof ids of complete packages already published for `day`."""


def day_path(day: str) -> str:
    """`YYYY-MM-DD` -> `YYYY/MM/DD`, refusing anything that is not a real date."""
    try:
        parsed = date.fromisoformat(day)
    except (TypeError, ValueError):
        raise PublicationError(f"day {day!r} is not a YYYY-MM-DD date") from None
    if parsed.isoformat() != day:
        raise PublicationError(f"day {day!r} is not a YYYY-MM-DD date (write it as {parsed.isoformat()})")
    return f"{parsed.year:04d}/{parsed.month:02d}/{parsed.day:02d}"


def check_package(proof_id: str, files: dict[str, bytes]) -> None:
    """Validate names before anything is written (they become paths/keys)."""
    if not isinstance(proof_id, str) or not _PROOF_ID_RE.match(proof_id):
        raise PublicationError(f"proof id {proof_id!r} is not usable in a path: letters, digits, "
                               "'.', '_', ':', '-' only")
    if PROOF_FILE not in files:
        raise PublicationError(f"package has no {PROOF_FILE}; refusing to publish data without "
                               "its signed statement")
    for name, content in files.items():
        if not _FILE_RE.match(name):
            raise PublicationError(f"file name {name!r} is not allowed in a package (plain names "
                                   "only, no directories)")
        if not isinstance(content, bytes | bytearray):
            raise PublicationError(f"file {name} must be bytes, got {type(content).__name__}")


def ordered_names(files: dict[str, bytes]) -> list[str]:
    """Data files first (sorted), `proof_package.json` last: see the module docstring."""
    return sorted(n for n in files if n != PROOF_FILE) + [PROOF_FILE]


def same_statement(existing: bytes, new: bytes) -> bool:
    """Whether two `proof_package.json` files carry the same statement (signatures aside)."""
    try:
        return json.loads(existing)["statement"] == json.loads(new)["statement"]
    except (ValueError, KeyError, TypeError):
        return False
