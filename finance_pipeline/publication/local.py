"""Publish proof packages to a local directory (embedded default, development, air-gapped audits).

Files are written to a temp file, fsynced, made read-only (0444) and then hard-linked into
place: `link` fails if the target exists, so a file is never overwritten, even by a racing
writer (a rename would silently replace it). `proof_package.json` is written last.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from finance_pipeline.publication.base import (
    DEFAULT_PREFIX,
    PROOF_FILE,
    AlreadyPublishedError,
    PublicationError,
    PublishResult,
    check_package,
    day_path,
    ordered_names,
    same_statement,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    # Make the new directory entry durable; not all platforms allow opening a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalPublisher:
    """Write-once publisher rooted at a directory: `<root>/<prefix>/YYYY/MM/DD/<proof_id>/`."""

    def __init__(self, root: str | os.PathLike, prefix: str = DEFAULT_PREFIX):
        # Absolute, so a location recorded in the registry or shown in the UI names one place
        # whatever the reader's working directory.
        self.root = Path(root).absolute()
        self.prefix = prefix.strip("/")

    def _day_dir(self, day: str) -> Path:
        return self.root / self.prefix / day_path(day)

    def location(self, day: str, proof_id: str) -> str:
        return str(self._day_dir(day) / proof_id)

    def existing_for_day(self, day: str) -> list[str]:
        day_dir = self._day_dir(day)
        if not day_dir.is_dir():
            return []
        return sorted(p.name for p in day_dir.iterdir()
                      if p.is_dir() and (p / PROOF_FILE).is_file())

    def publish(self, day: str, proof_id: str, files: dict[str, bytes]) -> PublishResult:
        check_package(proof_id, files)
        day_dir = self._day_dir(day)
        target = day_dir / proof_id
        others = [p for p in self.existing_for_day(day) if p != proof_id]
        if others:
            raise AlreadyPublishedError(day, others[0], proof_id, self.location(day, others[0]))
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublicationError(f"cannot create {target}: {exc.strerror}; check the publication "
                                   "directory exists and is writable") from exc
        created = False
        for name in ordered_names(files):
            # Another writer of this very proof completed it first: its statement is ours.
            accept = same_statement if name == PROOF_FILE else None
            created = self._write_once(target / name, bytes(files[name]), accept=accept)
        return PublishResult(location=str(target), created=created)

    def _write_once(self, path: Path, content: bytes, accept=None) -> bool:
        """Create `path` read-only with `content`; False if it already holds exactly that."""
        if path.exists():
            return self._same_or_fail(path, content, accept)
        # Staged beside the package folder, not in it: a crash leaves no stray file inside a
        # package (the verifier refuses any file that is not part of the format).
        staging = path.parent.parent / ".staging"
        staging.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.parent.name}.{path.name}.", suffix=".tmp", dir=staging)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)  # atomic create-only: EEXIST instead of overwriting
            except FileExistsError:
                return self._same_or_fail(path, content, accept)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                # Filesystem without hard links: best effort create-only rename.
                if path.exists():
                    return self._same_or_fail(path, content, accept)
                os.rename(tmp, path)
            _fsync_dir(path.parent)
            return True
        except OSError as exc:
            raise PublicationError(f"cannot write {path}: {exc.strerror or exc}; check free space "
                                   "and permissions of the publication directory") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _same_or_fail(path: Path, content: bytes, accept) -> bool:
        existing = path.read_bytes()
        if existing == content or (accept is not None and accept(existing, content)):
            return False
        raise PublicationError(
            f"{path} already exists with different content (sha256 {_sha(existing)}... vs "
            f"{_sha(content)}...): published files are never overwritten. The same proof id with "
            "different bytes means the package builder is not deterministic or the file was "
            "tampered with; verify the published package before doing anything else")

    def read(self, location: str) -> dict[str, bytes]:
        return load_local_package(location)


def load_local_package(location: str | os.PathLike) -> dict[str, bytes]:
    """All files of a complete local package directory (hidden temp files are ignored)."""
    path = Path(location)
    if not path.is_dir():
        raise PublicationError(f"no package directory at {path}")
    if not (path / PROOF_FILE).is_file():
        raise PublicationError(f"{path} has no {PROOF_FILE}: the publication was interrupted and "
                               "the package is incomplete; re-run the export for that day")
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())
            if p.is_file() and not p.name.startswith(".")}
