"""Write-once publication of proof packages: a local directory or S3 with Object Lock + SSE-KMS."""

from __future__ import annotations

from finance_pipeline.publication.base import (
    AlreadyPublishedError,
    PublicationError,
    Publisher,
    PublishResult,
)
from finance_pipeline.publication.load import load_package
from finance_pipeline.publication.local import LocalPublisher, load_local_package
from finance_pipeline.publication.s3 import S3Publisher, load_s3_package, parse_s3_uri

__all__ = [
    "AlreadyPublishedError", "LocalPublisher", "PublicationError",
    "PublishResult", "Publisher", "S3Publisher", "load_local_package", "load_package", "load_s3_package",
    "parse_s3_uri",
]
