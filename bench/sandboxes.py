"""The project's sandboxes with indexed list endpoints, run in a separate process.

`finance_pipeline.sandboxes` filter and sort every record on every page request, so one pull
of R records costs O(R^2 / page) on the server: fine for tests, hours for a million records.
These subclasses answer the list requests the pipeline makes (a `created` / time window, a
cursor, a limit) from records sorted once, with bisection, and return the very same pages
(`finance_pipeline_tests/perf/test_bench_sandboxes.py` compares them with the originals);
any other request goes to the original code. Everything else (auth, validation, envelopes,
faults, HTTP server) is the project's.

`python -m bench.sandboxes WORKDIR` serves WORKDIR/stripe.json and WORKDIR/payouts.json and
prints one JSON line with both URLs; it stops when its stdin closes.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.sandboxes.common import EncodedJSON, Request, SandboxError, SandboxServer, json_bytes
from finance_pipeline.sandboxes.payout_sandbox import (
    PayoutSandboxApp,
    _decode_cursor,
    _encode_cursor,
    settlement_of,
)
from finance_pipeline.sandboxes.stripe_sandbox import StripeSandboxApp

_RANGE_OPS = ("gt", "gte", "lt", "lte")


class IndexedStripeSandboxApp(StripeSandboxApp):
    _index_of: Any = None
    _index: tuple[list[tuple[int, str]], list[dict]] = ([], [])
    # Each record as json_bytes writes it inside a list, encoded once: the server then answers a
    # page by joining bytes. Stripe's servers are not on the machine being measured; this keeps
    # the stand-in's share of the two cores small (the pages' bytes are the same).
    _encoded: list[bytes] = []

    def _sorted(self, state) -> tuple[list[tuple[int, str]], list[dict]]:
        if self._index_of is not state:
            items = sorted(state.txns.values(), key=lambda o: (o["created"], o["id"]))
            self._index = ([(o["created"], o["id"]) for o in items], items)
            self._encoded = [json_bytes(o) for o in items]
            self._index_of = state
        return self._index

    def _list_txns(self, req: Request, state) -> dict:
        params = req.params()
        if set(params) & {"payout", "type", "currency", "source", "ending_before"}:
            return super()._list_txns(req, state)
        filters = self._common_list_params(params, {"payout", "type", "currency", "source"}, ("created",))
        keys, items = self._sorted(state)
        i0, i1 = 0, len(keys)
        for field, op, bound in filters["bounds"]:  # field is always "created" here
            if op in ("gte", "eq"):
                i0 = max(i0, bisect.bisect_left(keys, (bound,)))
            if op == "gt":
                i0 = max(i0, bisect.bisect_left(keys, (bound + 1,)))
            if op in ("lt",):
                i1 = min(i1, bisect.bisect_left(keys, (bound,)))
            if op in ("lte", "eq"):
                i1 = min(i1, bisect.bisect_left(keys, (bound + 1,)))
        j = i1
        if "starting_after" in params:
            cid = params["starting_after"]
            if cid not in state.txns:
                raise SandboxError(404, "resource_missing", f"No such balance transaction: '{cid}'",
                                   "starting_after")
            j = min(i1, bisect.bisect_left(keys, (state.txns[cid]["created"], cid)))
        limit = filters["limit"]
        stop = max(i0, j - limit)
        data = b", ".join(self._encoded[stop:j][::-1]) if j > i0 else b""
        # json_bytes({"object": "list", "data": page, "has_more": ..., "url": ...}), keys sorted.
        return EncodedJSON(b'{"data": [' + data + b'], "has_more": ' + (b"true" if j - i0 > limit else b"false")
                           + b', "object": "list", "url": "/v1/balance_transactions"}')


class IndexedPayoutSandboxApp(PayoutSandboxApp):
    _cache_of: Any = None
    _cache: dict[str, tuple[list[tuple[int, str]], list[dict]]] = {}

    def _rows(self, kind: str, status: str | None) -> tuple[list[tuple[int, str]], list[dict]]:
        with self.lock:
            if self._cache_of is not self.payouts:
                self._cache, self._cache_of = {}, self.payouts
            key = f"{kind}:{status}"
            if key not in self._cache:
                if kind == "settlements":
                    rows = [(parse_ts_us(p["settled_at"]), f"stl_{p['id']}", settlement_of(p))
                            for p in self.payouts.values() if p["status"] != "pending"]
                else:
                    rows = [(parse_ts_us(p["created_at"]), p["id"], p) for p in self.payouts.values()
                            if status is None or p["status"] == status]
                rows.sort(key=lambda r: (r[0], r[1]))
                self._cache[key] = ([(r[0], r[1]) for r in rows], [r[2] for r in rows])
            return self._cache[key]

    def _indexed_page(self, kind: str, keys, items, params, filters, lo, hi) -> dict:
        limit = self._limit(params)
        i0 = 0 if lo is None else bisect.bisect_left(keys, (lo,))
        i1 = len(keys) if hi is None else bisect.bisect_left(keys, (hi,))
        start = i0
        if params.get("cursor"):
            after = _decode_cursor(kind, filters, params["cursor"])
            start = max(i0, bisect.bisect_right(keys, tuple(after)))
        end = min(i1, start + limit)
        page = items[start:end] if end > start else []
        more = i1 - start > limit
        next_cursor = _encode_cursor(kind, filters, keys[end - 1]) if more else None
        return {"data": page, "next_cursor": next_cursor}

    def _list_settlements(self, params: dict[str, str]) -> dict:
        self._check_params(params, ("from", "to", "cursor", "limit"))
        lo, hi = self._ts_param(params, "from"), self._ts_param(params, "to")
        keys, items = self._rows("settlements", None)
        return self._indexed_page("settlements", keys, items, params, {"from": lo, "to": hi}, lo, hi)

    def _list_payouts(self, params: dict[str, str]) -> dict:
        self._check_params(params, ("status", "created_from", "created_to", "cursor", "limit"))
        status = params.get("status") or None
        if status is not None and status not in ("pending", "settled", "failed"):
            return super()._list_payouts(params)
        lo, hi = self._ts_param(params, "created_from"), self._ts_param(params, "created_to")
        keys, items = self._rows("payouts", status)
        filters = {"status": status, "from": lo, "to": hi}
        return self._indexed_page("payouts", keys, items, params, filters, lo, hi)


def serve(work: Path) -> None:
    stripe = SandboxServer(IndexedStripeSandboxApp(work / "stripe.json"))
    payout = SandboxServer(IndexedPayoutSandboxApp(work / "payouts.json"))
    stripe.start()
    payout.start()
    # Sort once before announcing, so no pull pays for it.
    stripe.app._sorted(stripe.app.state)
    payout.app._rows("settlements", None)
    payout.app._rows("payouts", "pending")
    print(json.dumps({"stripe": stripe.url, "payout": payout.url}), flush=True)
    try:
        sys.stdin.read()
    finally:
        stripe.stop()
        payout.stop()


@contextmanager
def running_sandboxes(work: Path) -> Iterator[dict[str, str]]:
    """Both sandboxes in a child process (so they do not share the GIL with the pipeline)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.sandboxes", str(work)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandboxes did not start (see stderr)")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
