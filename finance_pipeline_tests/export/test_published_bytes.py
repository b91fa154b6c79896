"""The published bytes of the demo days, pinned (issue 18: restructuring changes no byte).

The values were recorded at ccb39c4, before the proof package got its one home and
``prove_day``; a change to any file of a day, or to its statement, fails here by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import rfc8785

from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.export import registry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.proof.package import Package, statement_bytes

GOLDEN = Path(__file__).with_name("published_bytes.json")
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


def published_digests(world) -> dict[str, dict[str, str]]:
    """sha256 of the statement's canonical bytes and of every file, per published demo day."""
    inst = dg.DagsterInstance.ephemeral()
    engine = create_ledger_engine(world.database_url)
    out = {}
    for day in DAYS:
        run = materialize_day(world.definitions(), day, inst)
        assert not run.failed, run.errors
        [record] = registry.published_for_day(engine, day)
        folder = Path(record.location)
        package_file = (folder / "proof_package.json").read_bytes()
        s_bytes = statement_bytes(Package.load_dir(folder).statement())
        # The package file is RFC 8785 canonical and carries S byte for byte after "statement":.
        assert package_file == rfc8785.dumps(json.loads(package_file))
        assert package_file.startswith(b'{"signatures":[') and package_file.endswith(b',"statement":' + s_bytes + b"}")
        digests = {"statement": hashlib.sha256(s_bytes).hexdigest()}
        digests.update({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
                        if p.name != "proof_package.json"})  # its signatures differ on every run
        out[day] = digests
    engine.dispose()
    return out


def test_the_demo_days_publish_the_pinned_bytes(clean_world):
    assert published_digests(clean_world) == json.loads(GOLDEN.read_text())
