"""LocalPublisher: write-once, read-only files, one package per day, crash-safe order."""

from __future__ import annotations

import stat

import pytest

from finance_pipeline.proof.package import PROOF_FILE
from finance_pipeline.publication import (
    AlreadyPublishedError,
    LocalPublisher,
    PublicationError,
    load_local_package,
)

DAY = "2026-11-02"


def package(tag: str = "a") -> dict[str, bytes]:
    return {"ledger_entries.jsonl": f'{{"e":"{tag}"}}\n'.encode(),
            "provider_records.jsonl": b"",
            "reconciliation_report.json": f'{{"r":"{tag}"}}'.encode(),
            PROOF_FILE: f'{{"statement":{{"proof_id":"{tag}"}}}}'.encode()}


def test_publish_layout_read_only_files_and_round_trip(tmp_path):
    publisher = LocalPublisher(tmp_path)
    result = publisher.publish(DAY, "proof-a", package())
    assert result.created
    assert result.location == str(tmp_path / "proofs" / "2026" / "11" / "02" / "proof-a")
    assert result.location == publisher.location(DAY, "proof-a")
    target = tmp_path / "proofs/2026/11/02/proof-a"
    for name in package():
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o444
    assert stat.S_IMODE(target.stat().st_mode) & 0o700 == 0o700  # directories stay normal
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # no temp files left
    assert publisher.read(result.location) == package()
    assert publisher.existing_for_day(DAY) == ["proof-a"]
    assert publisher.existing_for_day("2026-11-03") == []


def test_identical_republish_is_a_noop(tmp_path):
    publisher = LocalPublisher(tmp_path)
    publisher.publish(DAY, "proof-a", package())
    again = publisher.publish(DAY, "proof-a", package())
    assert not again.created and publisher.read(again.location) == package()


def test_same_proof_id_with_different_bytes_is_refused(tmp_path):
    publisher = LocalPublisher(tmp_path)
    publisher.publish(DAY, "proof-a", package())
    changed = {**package(), "reconciliation_report.json": b'{"r":"tampered"}'}
    with pytest.raises(PublicationError, match="already exists with different content.*never overwritten"):
        publisher.publish(DAY, "proof-a", changed)
    assert publisher.read(publisher.location(DAY, "proof-a")) == package()


def test_different_proof_for_a_published_day_is_refused(tmp_path):
    publisher = LocalPublisher(tmp_path)
    publisher.publish(DAY, "proof-a", package("a"))
    with pytest.raises(AlreadyPublishedError) as info:
        publisher.publish(DAY, "proof-b", package("b"))
    assert str(info.value).startswith("ledger changed since proof proof-a was published for 2026-11-02")
    assert info.value.existing_proof_id == "proof-a" and info.value.new_proof_id == "proof-b"
    assert publisher.existing_for_day(DAY) == ["proof-a"]
    assert not (tmp_path / "proofs/2026/11/02/proof-b").exists()  # refused before writing
    publisher.publish("2026-11-03", "proof-b", package("b"))  # another day is fine


def test_statement_is_written_last_and_nothing_else_is_written(tmp_path, monkeypatch):
    publisher = LocalPublisher(tmp_path)
    order = []
    original = publisher._write_once
    monkeypatch.setattr(publisher, "_write_once",
                        lambda path, content, accept=None: order.append(path.name)
                        or original(path, content, accept))
    publisher.publish(DAY, "proof-a", package())
    assert order[-1] == PROOF_FILE
    assert sorted(order[:-1]) == sorted(n for n in package() if n != PROOF_FILE)
    # No claim or marker beside the package: who may publish a day is the ledger's seal; the
    # package folder holds its files and nothing else (temp files are staged outside it).
    assert sorted(p.name for p in (tmp_path / "proofs/2026/11/02").iterdir()
                  if not p.name.startswith(".")) == ["proof-a"]
    assert sorted(p.name for p in (tmp_path / "proofs/2026/11/02/proof-a").iterdir()) == sorted(package())


def _crash_before_statement(root) -> str:
    """What a crash before the statement leaves behind: data files, no proof_package.json."""
    target = root / "proofs/2026/11/02/proof-a"
    target.mkdir(parents=True)
    for name, data in package().items():
        if name != PROOF_FILE:
            (target / name).write_bytes(data)
    return str(target)


def test_interrupted_publication_is_incomplete_and_resumable(tmp_path):
    publisher = LocalPublisher(tmp_path)
    target = _crash_before_statement(tmp_path)
    assert publisher.existing_for_day(DAY) == []
    with pytest.raises(PublicationError, match="no proof_package.json.*interrupted"):
        load_local_package(target)
    assert publisher.publish(DAY, "proof-a", package()).created  # re-running completes it
    assert publisher.read(target) == package()


def test_incomplete_prefix_is_not_a_published_package(tmp_path):
    publisher = LocalPublisher(tmp_path)
    _crash_before_statement(tmp_path)
    assert publisher.publish(DAY, "proof-b", package("b")).created
    assert publisher.existing_for_day(DAY) == ["proof-b"]


def test_a_second_writer_of_the_same_proof_finishes_as_one_and_other_bytes_are_refused(tmp_path):
    import json

    publisher = LocalPublisher(tmp_path)
    first = package("a")
    assert publisher.publish(DAY, "proof-a", first).created
    # The same statement signed again (ECDSA differs each time): the stored package stands.
    again = dict(first)
    doc = json.loads(first[PROOF_FILE])
    doc["signatures"] = [{"other": "signature"}]
    again[PROOF_FILE] = json.dumps(doc).encode()
    assert publisher.publish(DAY, "proof-a", again).created is False
    assert publisher.read(publisher.location(DAY, "proof-a")) == first
    # Another statement under the same proof id is still a refusal, never an overwrite.
    doc["statement"] = {"changed": True}
    again[PROOF_FILE] = json.dumps(doc).encode()
    with pytest.raises(PublicationError, match="already exists with different content"):
        publisher.publish(DAY, "proof-a", again)


@pytest.mark.parametrize(("day", "proof_id", "files", "message"), [
    ("2026-11-31", "p", package(), "not a YYYY-MM-DD date"),
    ("20261102", "p", package(), "not a YYYY-MM-DD date"),
    (DAY, "../escape", package(), "not usable in a path"),
    (DAY, "p", {"ledger_entries.jsonl": b""}, "no proof_package.json"),
    (DAY, "p", {**package(), "sub/x.json": b""}, "not allowed in a package"),
    (DAY, "p", {**package(), "_claim.json": b""}, "not allowed in a package"),
])
def test_bad_input_is_refused(tmp_path, day, proof_id, files, message):
    with pytest.raises(PublicationError, match=message):
        LocalPublisher(tmp_path).publish(day, proof_id, files)


def test_read_of_missing_location(tmp_path):
    with pytest.raises(PublicationError, match="no package directory"):
        LocalPublisher(tmp_path).read(str(tmp_path / "nope"))
