"""publication.load_package: one loader for a folder, file:// and s3:// (issue 18)."""

from __future__ import annotations

import pytest

from finance_pipeline.proof.package import PROOF_FILE, PackageLoadError
from finance_pipeline.publication import LocalPublisher, PublicationError, S3Publisher, load_package
from finance_pipeline_tests.proof.helpers import build

DAY = "2026-11-02"


def test_a_folder_and_its_file_uri_load_the_same_package(tmp_path):
    pkg = build()
    pkg.extra_files["README.txt"] = b"hello"
    pkg.write_dir(tmp_path / "p")
    assert load_package(tmp_path / "p") == pkg
    assert load_package(f"file://{tmp_path / 'p'}") == pkg


def test_a_folder_missing_a_file_is_refused_unless_only_the_statement_is_asked(tmp_path):
    build().write_dir(tmp_path / "p")
    (tmp_path / "p" / "provider_records.jsonl").unlink()
    with pytest.raises(PackageLoadError, match="provider_records.jsonl"):
        load_package(tmp_path / "p")
    assert load_package(tmp_path / "p", require_all=False).provider_records is None


def test_an_unknown_scheme_and_a_folder_without_its_statement_are_named(tmp_path):
    with pytest.raises(PackageLoadError, match="gs:// packages are not supported; download the folder"):
        load_package("gs://bucket/proofs/2026/11/02/x/")
    pkg = build()
    pkg.write_dir(tmp_path / "p")
    assert load_package(f"FILE://{tmp_path / 'p'}") == pkg  # scheme names ignore case
    (tmp_path / "p" / PROOF_FILE).unlink()
    with pytest.raises(PackageLoadError, match=f"no {PROOF_FILE}: an interrupted publication"):
        load_package(tmp_path / "p")


def test_a_published_local_package_loads_as_written(tmp_path):
    pkg = build()
    result = LocalPublisher(tmp_path / "store").publish(DAY, "proof-a", pkg.files())
    assert load_package(result.location) == pkg


def test_an_s3_package_loads_through_the_given_client(s3_client, audit_bucket, sse_kms_key):
    pkg = build()
    publisher = S3Publisher(s3_client, audit_bucket, kms_key_id=sse_kms_key)
    result = publisher.publish(DAY, "proof-s3", pkg.files())
    assert load_package(result.location, s3_client=s3_client) == pkg
    prefix = result.location.split(f"s3://{audit_bucket}/", 1)[1]
    with pytest.raises(PublicationError, match="no package at"):
        load_package(f"s3://{audit_bucket}/{prefix}missing/", s3_client=s3_client)
    s3_client.delete_object(Bucket=audit_bucket, Key=prefix + PROOF_FILE)  # moto: retention not enforced here
    with pytest.raises(PublicationError, match=f"no {PROOF_FILE}: the publication was interrupted"):
        load_package(result.location, s3_client=s3_client)
