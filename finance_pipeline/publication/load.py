"""The one way to open a published package: a local folder, ``file://`` or ``s3://``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from finance_pipeline.proof.package import PROOF_FILE, Package, PackageLoadError
from finance_pipeline.publication.s3 import load_s3_package, s3_client as default_s3_client

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def load_package(location: str | Path, *, s3_client: Any | None = None, require_all: bool = True) -> Package:
    """The package at ``location``. A folder is read as an auditor would (Package.load_dir:
    symlinks and odd names kept apart for the verifier to refuse; ``require_all=False`` needs
    only `proof_package.json`); an ``s3://bucket/prefix/`` location is read with ``s3_client``
    (by default ``s3_client()``: boto3's standard AWS chain)."""
    text = str(location)
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1).lower() == "s3":
        return Package.from_files(load_s3_package(text, s3_client or default_s3_client()))
    if scheme and scheme.group(1).lower() == "file":
        text = text[scheme.end():]
    elif scheme:
        raise PackageLoadError(f"{text}: {scheme.group(1)}:// packages are not supported; download the "
                               "folder and pass its local path (or an s3:// location)")
    if Path(text).is_dir() and not (Path(text) / PROOF_FILE).exists():
        raise PackageLoadError(f"{text}: no {PROOF_FILE}: an interrupted publication or not a package "
                               "folder; re-run the export for that day, or pass the package's folder")
    return Package.load_dir(text, require_all=require_all)
