"""Sealed days: publication is crash-safe and atomic with the day's close, on the local folder
and on S3 (moto server), and an entry posted while its day is exported ends in exactly one
package or is refused, never accepted and left out."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.cli.export import GATE_ASSETS
from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.defs.io_managers import StoredFrame
from finance_pipeline.export import exporter, registry
from finance_pipeline.export.prove import prove_day
from finance_pipeline.ledger import periods
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.errors import ClosedDayError
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.ledger.schema import day_seals
from finance_pipeline.proof.package import Package
from finance_pipeline.publication import LocalPublisher, S3Publisher
from finance_pipeline.reconciliation import Tolerances
from finance_pipeline.signing.config import SigningConfig, build_signers

DAY = "2026-11-01"


class Crash(BaseException):
    """A kill -9 as far as the code under test can tell: nothing catches it, nothing cleans up."""


def _entry(journal_id: str, amount: int = 100, ts: str = f"{DAY}T12:00:00Z") -> dict:
    return {"journal_id": journal_id, "ts": ts, "kind": "standard", "memo": "test", "posted_by": "ops:ana",
            "lines": [{"account_id": "misc_a_usd", "direction": "debit", "amount_minor": amount, "currency": "USD"},
                      {"account_id": "misc_b_usd", "direction": "credit", "amount_minor": amount, "currency": "USD"}]}


def _accounts(engine) -> None:
    """Two accounts without a reconciliation role: entries on them never block a gate."""
    from finance_pipeline.ledger.accounts import create_account

    for name in ("misc_a_usd", "misc_b_usd"):
        create_account(engine, name, name, "asset", "USD", None)


@pytest.fixture
def gated_day(clean_world):
    """The clean world's first day, extracted, reconciled and gated (passing), not published."""
    run = materialize_day(clean_world.definitions(), DAY, dg.DagsterInstance.ephemeral(), assets=GATE_ASSETS)
    assert run.gates_passed, run
    engine = create_ledger_engine(clean_world.database_url)
    _accounts(engine)
    engine.dispose()
    return clean_world


def _bundle(world):
    storage = world.storage
    sources = {name: StoredFrame(name, open(storage / name / f"{DAY}.parquet", "rb"))
               for name in ("ledger_extract", "stripe_balance_transactions", "payout_settlements")}
    import json

    report = json.loads((storage / "reconciliation_report" / f"{DAY}.json").read_bytes())
    return prove_day(DAY, sources["ledger_extract"], sources["stripe_balance_transactions"],
                        sources["payout_settlements"], report, Tolerances(), None)


def _signer(world):
    cfg = SigningConfig.embedded_default(world.storage.parent / "var" / "keys")
    signers = build_signers(cfg)
    return lambda bundle: (lambda: exporter.seal(bundle, signers, cfg.quorum))


def _crash_after(publisher, writes: int) -> list[str]:
    """Make the publisher die just before its ``writes``+1-th file write; returns the names written."""
    method = "_put_once" if isinstance(publisher, S3Publisher) else "_write_once"
    original = getattr(publisher, method)
    done: list[str] = []

    def write(target, *args, **kwargs):
        if len(done) >= writes:
            raise Crash(f"killed before writing {target}")
        done.append(str(target))
        return original(target, *args, **kwargs)

    setattr(publisher, method, write)
    return done


def _seals(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(day_seals)).all()


@pytest.mark.parametrize("store", ["local", "s3"])
def test_publication_killed_between_any_two_writes_publishes_once_on_the_re_run(
        gated_day, tmp_path, store, request):
    engine = create_ledger_engine(gated_day.database_url)
    sign_for = _signer(gated_day)
    if store == "s3":
        client, bucket, key = (request.getfixturevalue(n) for n in ("s3_client", "audit_bucket", "sse_kms_key"))

    def publisher(round_no: int):
        """A publisher of the round's own place (folder or key prefix): each round starts empty."""
        if store == "local":
            return LocalPublisher(tmp_path / f"round{round_no}")
        return S3Publisher(client, bucket, kms_key_id=key, prefix=f"round{round_no}")

    bundle = _bundle(gated_day)
    n_files = len(bundle.files) + 1  # and proof_package.json
    proof_ids = set()
    try:
        # Crash points: after the seal and before each file write, then after the last write
        # (between the store and the registry).
        for writes in range(n_files + 1):
            crashing = publisher(writes)
            _crash_after(crashing, writes)
            register = registry.register
            if writes == n_files:
                def register(*a, **k):  # noqa: E306 - the crash between the store and the registry
                    raise Crash("killed before the registry row")
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(registry, "register", register)
                with pytest.raises(Crash):
                    exporter.publish_day(engine, bundle, crashing, sign_for(bundle), holder="run:dead")
            # The day is sealed: nothing can be posted into it while its publication is unfinished.
            with pytest.raises(ClosedDayError, match=f"day {DAY} is sealed"):
                post_entries(engine, [_entry(f"during-{store}-{writes}")])
            assert registry.published_for_day(engine, DAY) == []

            # The re-run (another run; the dead one's seal is taken over) publishes exactly once.
            pub = publisher(writes)
            done = exporter.publish_day(engine, bundle, pub, sign_for(bundle), holder="run:rerun",
                                        holder_alive=lambda holder: holder != "run:dead")
            [record] = registry.published_for_day(engine, DAY)
            assert record.proof_id == done.proof_id == bundle.statement["proof_id"]
            assert done.recovered is (writes == n_files)
            assert pub.existing_for_day(DAY) == [done.proof_id]
            assert Package.from_files(pub.read(record.location)).statement() == bundle.statement
            assert _seals(engine) == []  # no orphan seal
            proof_ids.add(done.proof_id)
            with pytest.raises(ClosedDayError, match="is closed by proof"):
                post_entries(engine, [_entry(f"after-{store}-{writes}")])
            # Reopen the day for the next round (the registry is the only state that closes it).
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM proofs"))
    finally:
        engine.dispose()
    assert len(proof_ids) == 1


def test_recover_finishes_a_complete_package_and_reopens_an_incomplete_one(gated_day, tmp_path):
    engine = create_ledger_engine(gated_day.database_url)
    sign_for = _signer(gated_day)
    bundle = _bundle(gated_day)
    try:
        # Killed after two files: no complete package, the recovery reopens the day.
        pub = LocalPublisher(tmp_path / "a")
        _crash_after(pub, 2)
        with pytest.raises(Crash):
            exporter.publish_day(engine, bundle, pub, sign_for(bundle), holder="run:dead")
        # Within its lease the dead run's seal might still be writing: not touched without force.
        with pytest.raises(periods.PublicationInProgressError, match="pass --force if that run is dead"):
            exporter.recover_day(engine, DAY, LocalPublisher(tmp_path / "a"), actor="ops:ana")
        message = exporter.recover_day(engine, DAY, LocalPublisher(tmp_path / "a"), actor="ops:ana", force=True)
        assert "left no complete package; the day is open again" in message
        assert _seals(engine) == [] and registry.published_for_day(engine, DAY) == []
        post_entries(engine, [_entry("open-again")])  # accepted: the day is open

        # Killed after the whole store write: the recovery registers the stored package.
        bundle = _bundle_after_post(gated_day)
        pub = LocalPublisher(tmp_path / "b")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(registry, "register", lambda *a, **k: (_ for _ in ()).throw(Crash("before registry")))
            with pytest.raises(Crash):
                exporter.publish_day(engine, bundle, pub, sign_for(bundle), holder="run:dead")
        later = periods.get_seal_of(engine, DAY).lease_until_us + 1  # the lease ran out
        message = exporter.recover_day(engine, DAY, pub, actor="ops:ana", now=later)
        assert "registered it (the day is closed)" in message
        [record] = registry.published_for_day(engine, DAY)
        assert record.proof_id == bundle.statement["proof_id"] and _seals(engine) == []
        assert "nothing to recover" in exporter.recover_day(engine, DAY, pub, actor="ops:ana")
    finally:
        engine.dispose()


def _bundle_after_post(world):
    run = materialize_day(world.definitions(), DAY, dg.DagsterInstance.ephemeral(), assets=GATE_ASSETS)
    assert run.gates_passed, run
    return _bundle(world)


def test_a_live_publication_is_not_taken_over_and_a_second_export_is_told_so(gated_day, tmp_path):
    engine = create_ledger_engine(gated_day.database_url)
    bundle = _bundle(gated_day)
    try:
        periods.seal_day(engine, DAY, bundle.statement["proof_id"], bundle.statement["ledger"]["entries"],
                         holder="run:first")
        with pytest.raises(periods.PublicationInProgressError,
                           match=f"{DAY} is already being published .*by run:first"):
            exporter.publish_day(engine, bundle, LocalPublisher(tmp_path), _signer(gated_day)(bundle),
                                 holder="run:second", holder_alive=lambda holder: True)
        assert registry.published_for_day(engine, DAY) == []
        assert not (tmp_path / "proofs").exists()
    finally:
        engine.dispose()


def test_an_entry_posted_after_the_extract_stops_the_publication_and_the_day_stays_open(gated_day, tmp_path):
    engine = create_ledger_engine(gated_day.database_url)
    bundle = _bundle(gated_day)
    try:
        post_entries(engine, [_entry("mid-export")])
        with pytest.raises(periods.LedgerMovedError, match="entries were posted while the day was being exported"):
            exporter.publish_day(engine, bundle, LocalPublisher(tmp_path), _signer(gated_day)(bundle),
                                 holder="run:x")
        assert registry.published_for_day(engine, DAY) == [] and _seals(engine) == []
        post_entries(engine, [_entry("still-open")])
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_entries_posted_while_exporting_end_in_exactly_one_package_or_are_refused(
        backend, tmp_path, monkeypatch, request):
    from finance_pipeline_tests.fixtures.world import make_world

    url = (f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    world = make_world(url, tmp_path, monkeypatch, days=1, inject=0)
    engine = create_ledger_engine(url)
    accepted: list[str] = []
    refused: list[str] = []
    published = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def post(jid: str, amount: int) -> None:
        try:
            post_entries(engine, [_entry(jid, amount=amount)])
            accepted.append(jid)
        except ClosedDayError:
            refused.append(jid)

    def poster():
        try:
            # A burst while the first export runs (extract, gates, proof), then quiet until the
            # day is published, then more posts, which the close must refuse.
            for i in range(60):
                post(f"race-{i}", 100 + i)
                time.sleep(0.05)
            published.wait(timeout=300)
            for i in range(60, 65):
                post(f"race-{i}", 100 + i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        _accounts(engine)
        inst = dg.DagsterInstance.ephemeral()
        thread = threading.Thread(target=poster, daemon=True)
        thread.start()
        attempts = []
        for _ in range(12):
            run = materialize_day(world.definitions(), DAY, inst)
            attempts.append(run.errors.get("proof_package", "published" if "proof_package" in run.metadata else run))
            if "proof_package" in run.metadata:
                break
        assert "proof_package" in run.metadata, attempts
        published.set()
        stop.set()
        thread.join(timeout=10)
        assert not errors, errors
        assert refused, "no post was tried after the day closed"
        assert any("entries were posted while the day was being exported" in str(a) for a in attempts[:-1]) \
            or len(attempts) == 1
        [record] = registry.published_for_day(engine, DAY)
        leaves = Package.load_dir(record.location).files()["ledger_entries.jsonl"].decode()
        in_package = {line.split('"journal_id":"')[1].split('"')[0] for line in leaves.splitlines() if line}
        assert set(accepted) <= in_package, sorted(set(accepted) - in_package)
        assert not (set(refused) & in_package)
        with engine.connect() as conn:
            stored = set(conn.execute(sa.text("SELECT journal_id FROM journal_entries WHERE journal_id LIKE 'race-%'"))
                         .scalars())
        assert stored == set(accepted)
    finally:
        stop.set()
        engine.dispose()
        world.stripe.stop()
        world.payout.stop()


def test_recover_publication_command_reopens_a_day_whose_publication_died(gated_day):
    import os

    from click.testing import CliRunner

    from finance_pipeline.cli import main

    engine = create_ledger_engine(gated_day.database_url)
    bundle = _bundle(gated_day)
    try:
        pub = LocalPublisher(os.environ["FP_PUBLISH_DIR"])
        _crash_after(pub, 1)
        with pytest.raises(Crash):
            exporter.publish_day(engine, bundle, pub, _signer(gated_day)(bundle), holder="run:dead")
        with pytest.raises(ClosedDayError, match="recover-publication 2026-11-01"):
            post_entries(engine, [_entry("sealed")])
        busy = CliRunner().invoke(main, ["recover-publication", DAY, "--actor", "ops:ana"])
        assert busy.exit_code == 1 and "pass --force if that run is dead" in busy.output
        result = CliRunner().invoke(main, ["recover-publication", DAY, "--actor", "ops:ana", "--force"])
        assert result.exit_code == 0, result.output
        assert "the day is open again" in result.output
        post_entries(engine, [_entry("reopened")])
        again = CliRunner().invoke(main, ["recover-publication", DAY])
        assert "open (no publication in progress); nothing to recover" in again.output
    finally:
        engine.dispose()


def test_a_publication_that_lost_its_seal_registers_nothing(gated_day, tmp_path):
    """A run whose seal another publication took over (its lease ran out while it was still
    writing) must not close the day with its package."""
    engine = create_ledger_engine(gated_day.database_url)
    bundle = _bundle(gated_day)
    try:
        proof_id = bundle.statement["proof_id"]
        periods.seal_day(engine, DAY, "fp1-20261101-another", bundle.statement["ledger"]["entries"],
                         holder="run:other")
        with pytest.raises(periods.PublicationInProgressError, match="lost the day to another"):
            registry.register(engine, proof_id=proof_id, day=DAY, merkle_root=bundle.merkle_root,
                              statement_sha256="0" * 64, location=str(tmp_path), fmt="finance-proof/1",
                              actor="run:late")
        assert registry.published_for_day(engine, DAY) == []
        assert periods.get_seal_of(engine, DAY).proof_id == "fp1-20261101-another"
    finally:
        engine.dispose()
