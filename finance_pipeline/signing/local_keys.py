"""Local P-256 key files for the embedded default (`finance-pipeline keys init`).

Production signs with KMS; these files exist so the demo and development produce packages
with the same format and quorum as production. Private keys are mode 0600 and never
overwritten: an existing key is reused, so re-running init is harmless.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from finance_pipeline.files import write_atomic
from finance_pipeline.signing.signers import (
    SigningError,
    load_private_key,
    local_key_id,
    public_key_to_pem,
)

DEFAULT_ROLES = ("finance-lead", "security-engineer")
KEYRING_FILE = "keyring.json"
_ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def key_path(keys_dir: Path, role: str) -> Path:
    return Path(keys_dir) / f"{role}.pem"


def check_role(role: str) -> str:
    # The role becomes a file name: keep it to a safe, predictable alphabet.
    if not _ROLE_RE.match(role):
        raise SigningError(f"role {role!r} is not valid: use lowercase letters, digits and '-' "
                           "(for example finance-lead)")
    return role


@dataclass(frozen=True)
class LocalKey:
    role: str
    key_id: str
    path: Path
    public_key_pem: str
    created: bool


def ensure_key(keys_dir: Path, role: str) -> LocalKey:
    """Create `<role>.pem` (0600, O_EXCL) unless it exists; an existing key is loaded and reused."""
    check_role(role)
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_path(keys_dir, role)
    created = False
    if not path.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        try:
            # O_EXCL: never replace a key, even if another init races us; mode 0600 from birth.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # someone else created it between our check and open: reuse theirs
        else:
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            created = True
    key = load_private_key(path)  # also enforces 0600 on a reused key
    public = key.public_key()
    return LocalKey(role=role, key_id=local_key_id(role, public), path=path,
                    public_key_pem=public_key_to_pem(public), created=created)


def keyring_for(keys: Sequence[LocalKey]):
    """The public keyring of these keys with quorum = every role, distinct roles."""
    from finance_pipeline.proof.keyring import Keyring, KeyringKey, QuorumPolicy

    return Keyring(
        keys=[KeyringKey(key_id=k.key_id, role=k.role, public_key_pem=k.public_key_pem) for k in keys],
        quorum=QuorumPolicy(min_signatures=len(keys), distinct_roles=True),
    )


def write_public_file(path: Path, text: str) -> None:
    """Atomically replace a public (0644) file: temp file in the same directory, then rename."""
    write_atomic(path, text, mode=0o644)


def init_keys(keys_dir: Path | str, roles: Sequence[str] = DEFAULT_ROLES):
    """Ensure one key per role and (re)write the public keyring.json next to them.

    Returns (keys, keyring_path). keyring.json is derived from the key files, so rewriting it
    is safe; the private keys are never touched once created.
    """
    keys_dir = Path(keys_dir)
    roles = list(dict.fromkeys(roles))  # keep order, drop duplicates
    if not roles:
        raise SigningError("no roles given: pass --roles finance-lead,security-engineer")
    keys = [ensure_key(keys_dir, role) for role in roles]
    keyring = keyring_for(keys)
    keyring_path = keys_dir / KEYRING_FILE
    text = keyring.to_json()
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not text.endswith("\n"):
        text += "\n"
    write_public_file(keyring_path, text)
    return keys, keyring_path
