"""materialize_day runs a partition like execute_in_process, without holding the outputs."""

import gc
import weakref

import dagster as dg

from finance_pipeline.defs.launch import materialize_day

_alive: list = []
_upstream_gone_when_downstream_ran: list = []


class _Big:
    """Stands for a day's frame; the test watches whether the run keeps it alive."""


class _DropIO(dg.IOManager):
    def handle_output(self, context, obj):
        _alive.append(weakref.ref(obj))

    def load_input(self, context):
        return _Big()


def _defs():
    parts = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    @dg.asset(partitions_def=parts)
    def upstream(context) -> _Big:
        return _Big()

    @dg.asset(partitions_def=parts, check_specs=[dg.AssetCheckSpec("ok", asset="downstream", blocking=True)])
    def downstream(context, upstream: _Big):
        assert context.partition_key == "2026-11-02"
        gc.collect()  # (a cycle awaiting collection is not the run holding the value)
        _upstream_gone_when_downstream_ran.append(_alive[0]() is None)
        yield dg.Output(_Big(), metadata={"day": context.partition_key})
        yield dg.AssetCheckResult(check_name="ok", passed=True)

    return dg.Definitions(assets=[upstream, downstream], resources={"io_manager": _DropIO()})


def test_a_day_runs_and_its_outputs_are_not_kept_in_memory():
    _alive.clear()
    _upstream_gone_when_downstream_ran.clear()
    inst = dg.DagsterInstance.ephemeral()
    run = materialize_day(_defs(), "2026-11-02", inst, tags={"who": "test"})
    assert run.success and run.checks == {"ok": True} and not run.failed
    assert run.metadata["downstream"] == {"day": "2026-11-02"}
    stored = inst.get_run_by_id(run.run_id)
    assert stored.tags["dagster/partition"] == "2026-11-02" and stored.tags["who"] == "test"
    # The upstream step's output was stored and let go before the next step ran.
    assert len(_alive) == 2 and _upstream_gone_when_downstream_ran == [True]
