"""The storage IO manager: frames as Parquet and reports as canonical JSON, in a local folder or
in S3 (moto's server over HTTP); frames can also be handed over as sources read on demand."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from finance_pipeline_tests.fixtures import skip_unless_ci
from dagster_aws.s3 import S3Resource

from finance_pipeline.defs.io_managers import AS_SOURCE, ParquetFile, ParquetIOManager, StoredFrame
from finance_pipeline_tests.fixtures.aws import DUMMY_CREDENTIALS, REGION

DAY = "2026-11-02"


@pytest.fixture(params=["local", "s3"])
def manager(request, tmp_path):
    if request.param == "local":
        return ParquetIOManager(base_dir=str(tmp_path), s3=S3Resource())
    endpoint = request.getfixturevalue("moto_server")
    client = S3Resource(endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"],
                        aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"])
    bucket = f"storage-{tmp_path.name.lower().replace('_', '-')[-20:]}"
    client.get_client().create_bucket(Bucket=bucket)
    return ParquetIOManager(s3_bucket=bucket, s3=client)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"provider": pd.Series(["stripe", "stripe"], dtype="str"),
                         "id": pd.Series(["txn_1", "txn_2"], dtype="str"),
                         "amount": pd.Series([1250, -40], dtype="int64"),
                         "record": pd.Series(['{"id":"txn_1"}', '{"id":"txn_2"}'], dtype="str")})


PARTS = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)
SEEN: dict = {}


@dg.asset(name="stripe_balance_transactions", partitions_def=PARTS, io_manager_key="storage")
def pulled() -> pd.DataFrame:
    return _frame()


@dg.asset(partitions_def=PARTS, io_manager_key="storage")
def as_frame(stripe_balance_transactions: pd.DataFrame) -> None:
    SEEN["frame"] = stripe_balance_transactions


@dg.asset(partitions_def=PARTS, io_manager_key="storage",
          ins={"stripe_balance_transactions": dg.AssetIn(metadata=AS_SOURCE)})
def as_source(stripe_balance_transactions: StoredFrame) -> None:
    source = stripe_balance_transactions
    SEEN["source"] = source
    # Names the frame lacks are left out (the bundle asks for `record` and the older `raw`).
    SEEN["some"] = source.read(["id", "raw", "record"])
    SEEN["all"] = source.read()
    SEEN["again"] = source.read(["amount"])
    SEEN["pieces"] = list(source.batches(1))
    SEEN["some pieces"] = list(source.batches(5, ["id", "raw"]))


def _run(manager: ParquetIOManager, selection, partition: str = DAY) -> dg.ExecuteInProcessResult:
    SEEN.clear()
    return dg.materialize([pulled, as_frame, as_source], selection=selection, partition_key=partition,
                          resources={"storage": manager}, raise_on_error=False)


WRITTEN: dict = {}


@dg.asset(name="stripe_balance_transactions", partitions_def=PARTS, io_manager_key="storage")
def written_by_the_step() -> ParquetFile:
    """A step that writes its own Parquet file (as the ledger extract does), in two row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = WRITTEN["dir"] / "spool.parquet"
    frame = _frame()
    with pq.ParquetWriter(path, pa.Schema.from_pandas(frame, preserve_index=False)) as writer:
        for at in (0, 1):
            writer.write_table(pa.Table.from_pandas(frame.iloc[at:at + 1], preserve_index=False))
    WRITTEN["path"] = path
    return ParquetFile(path, len(frame))


def test_a_file_a_step_wrote_is_stored_as_it_is_and_read_back_as_its_frame(manager, tmp_path):
    WRITTEN["dir"] = tmp_path
    SEEN.clear()
    result = dg.materialize([written_by_the_step, as_frame, as_source], partition_key=DAY,
                            resources={"storage": manager})
    assert result.success
    pd.testing.assert_frame_equal(SEEN["frame"], _frame())
    pd.testing.assert_frame_equal(SEEN["all"], _frame())
    assert [len(p) for p in SEEN["pieces"]] == [1, 1]
    # The step's own file is gone, moved or uploaded; the stored one is whole.
    assert not WRITTEN["path"].exists()
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == 2
    if not manager.s3_bucket:
        stored = tmp_path / "stripe_balance_transactions" / f"{DAY}.parquet"
        assert meta["storage"].value == str(stored) and not list(tmp_path.rglob("*.tmp"))


def test_a_frame_comes_back_as_it_was_stored(manager):
    assert _run(manager, [pulled, as_frame]).success
    pd.testing.assert_frame_equal(SEEN["frame"], _frame())


def test_a_frame_as_a_source_reads_only_the_columns_asked_for(manager):
    frame = _frame()
    assert _run(manager, [pulled, as_source]).success
    assert isinstance(SEEN["source"], StoredFrame)
    pd.testing.assert_frame_equal(SEEN["some"], frame[["id", "record"]])
    pd.testing.assert_frame_equal(SEEN["all"], frame)
    pd.testing.assert_frame_equal(SEEN["again"], frame[["amount"]])
    # In pieces: each with the frame's dtypes and an index of its own.
    assert [len(p) for p in SEEN["pieces"]] == [1, 1]
    pd.testing.assert_frame_equal(SEEN["pieces"][1], frame.iloc[1:].reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.concat(SEEN["pieces"], ignore_index=True), frame)
    assert len(SEEN["some pieces"]) == 1
    pd.testing.assert_frame_equal(SEEN["some pieces"][0], frame[["id"]])


@pytest.mark.parametrize("consumer", [as_frame, as_source])
def test_a_partition_never_stored_is_a_clear_error(manager, consumer):
    assert _run(manager, [pulled]).success
    result = _run(manager, [consumer], partition="2026-11-03")
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.cause.message
    assert "stripe_balance_transactions partition 2026-11-03: materialize it first" in message


@pytest.mark.parametrize("env, pool", [({}, "jemalloc"), ({"ARROW_DEFAULT_MEMORY_POOL": "system"}, "system")])
def test_steps_allocate_arrow_memory_from_jemalloc_unless_told_otherwise(env, pool):
    """In a fresh process: the pool is a process-wide setting, chosen where the definitions load
    (what a run's process and the CLI do before any step)."""
    import os
    import subprocess
    import sys

    import pyarrow as pa

    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        skip_unless_ci("this pyarrow build has no jemalloc")
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    code = ("import pyarrow as pa; from finance_pipeline.definitions import build_definitions; "
            "from finance_pipeline.defs.io_managers import release_unused_memory; "
            "build_definitions(); release_unused_memory(); print(pa.default_memory_pool().backend_name)")
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == pool


def test_a_source_reads_the_version_its_step_loaded(manager):
    """A re-materialization while the step runs does not change what the step reads."""
    frame = _frame()
    _run(manager, [pulled])
    source = manager.load_input(dg.build_input_context(asset_key=pulled.key, partition_key=DAY,
                                                       definition_metadata=AS_SOURCE))
    newer = frame.assign(amount=frame["amount"] + 1)
    manager.handle_output(dg.build_output_context(asset_key=pulled.key, partition_key=DAY), newer)
    pd.testing.assert_frame_equal(source.read(["amount"]), frame[["amount"]])
    pd.testing.assert_frame_equal(source.read(without=["record"]), frame.drop(columns=["record"]))
    fresh = manager.load_input(dg.build_input_context(asset_key=pulled.key, partition_key=DAY))
    pd.testing.assert_frame_equal(fresh, newer)


@dg.asset(name="payout_settlements", partitions_def=PARTS, io_manager_key="storage")
def pulled_too() -> pd.DataFrame:
    return _frame()


@dg.asset(partitions_def=PARTS, io_manager_key="storage",
          ins={"stripe_balance_transactions": dg.AssetIn(metadata=AS_SOURCE)})
def two_inputs(stripe_balance_transactions: StoredFrame, payout_settlements: pd.DataFrame) -> None:
    SEEN["two"] = stripe_balance_transactions.read(["id"])


def test_memory_is_released_once_before_each_step_not_before_each_input(monkeypatch, tmp_path):
    """A full collection and heap trim cost a quarter of a second in a loaded process: once per
    step that loads inputs (as_frame: one input; two_inputs: two), again in every new run."""
    from finance_pipeline.defs import io_managers

    calls = []
    monkeypatch.setattr(io_managers, "release_unused_memory", lambda: calls.append(1))
    manager = ParquetIOManager(base_dir=str(tmp_path), s3=S3Resource())
    for run in (1, 2):
        result = dg.materialize([pulled, pulled_too, as_frame, two_inputs], partition_key=DAY,
                                resources={"storage": manager})
        assert result.success and SEEN["two"]["id"].tolist() == ["txn_1", "txn_2"]
        assert len(calls) == 2 * run
    # An input context built by hand has no step: released every time.
    manager.load_input(dg.build_input_context(asset_key=pulled.key, partition_key=DAY))
    manager.load_input(dg.build_input_context(asset_key=pulled.key, partition_key=DAY))
    assert len(calls) == 6
