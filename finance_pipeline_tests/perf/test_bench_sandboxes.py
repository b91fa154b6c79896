"""The benchmark's indexed sandboxes answer every list request as the project's sandboxes do."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.sandboxes.common import SandboxServer
from finance_pipeline.sandboxes.payout_sandbox import PayoutSandboxApp
from finance_pipeline.sandboxes.stripe_sandbox import StripeSandboxApp

import bench.generate as generate  # the benchmark lives next to the package (repo root on sys.path)
import bench.sandboxes as bench

DAY = "2026-11-02"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    out: Path = tmp_path_factory.mktemp("bench_sandboxes")
    ds = generate.build(400, DAY, seed=3)
    leaves = [generate.leaf_text({k: v for k, v in e.items() if k != "_ts_us"}) for e in ds.entries]
    generate.write_files(ds, leaves, out)
    pairs = {}
    for name, plain, indexed, data in (
        ("stripe", StripeSandboxApp, bench.IndexedStripeSandboxApp, out / "stripe.json"),
        ("payout", PayoutSandboxApp, bench.IndexedPayoutSandboxApp, out / "payouts.json"),
    ):
        a, b = SandboxServer(plain(data)), SandboxServer(indexed(data))
        a.start()
        b.start()
        pairs[name] = (a, b)
    yield pairs
    for a, b in pairs.values():
        a.stop()
        b.stop()


def _get(server, path: str, params: dict, token: str) -> tuple[int, dict]:
    resp = httpx.get(server.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return resp.status_code, resp.json()


def _walk_stripe(server, params: dict) -> list[tuple[int, dict]]:
    pages, cursor = [], None
    for _ in range(200):
        p = dict(params, **({"starting_after": cursor} if cursor else {}))
        status, body = _get(server, "/v1/balance_transactions", p, "sk_test_sandbox")
        pages.append((status, body))
        if status != 200 or not body["has_more"]:
            return pages
        cursor = body["data"][-1]["id"]
    return pages


LO, HI = day_bounds_us(DAY)


@pytest.mark.parametrize("params", [
    {"limit": 100},
    {"limit": 7, "created[gte]": LO // 10**6, "created[lt]": HI // 10**6},
    {"limit": 3, "created[gt]": LO // 10**6 + 3600, "created[lte]": LO // 10**6 + 20000},
    {"limit": 5, "created": LO // 10**6 + 7},
    {"limit": 9, "type": "refund"},
    {"limit": 0},
    {"limit": 4, "created[gte]": "x"},
    {"limit": 4, "starting_after": "txn_nope"},
])
def test_stripe_pages_are_the_same(servers, params):
    plain, indexed = servers["stripe"]
    assert _walk_stripe(indexed, params) == _walk_stripe(plain, params)
    # Byte for byte: the indexed server writes its pages from records encoded once.
    first = {k: v for k, v in params.items()}
    a, b = (httpx.get(s.url + "/v1/balance_transactions", params=first, timeout=30,
                      headers={"Authorization": "Bearer sk_test_sandbox"}) for s in (indexed, plain))
    assert (a.status_code, a.content) == (b.status_code, b.content)


def _walk_payouts(server, path: str, params: dict) -> list[tuple[int, dict]]:
    pages, cursor = [], None
    for _ in range(200):
        p = dict(params, **({"cursor": cursor} if cursor else {}))
        status, body = _get(server, path, p, "payout_sandbox_token")
        pages.append((status, body))
        if status != 200 or body["next_cursor"] is None:
            return pages
        cursor = body["next_cursor"]
    return pages


@pytest.mark.parametrize("path,params", [
    ("/settlements", {"limit": 100}),
    ("/settlements", {"limit": 6, "from": format_ts_us(LO), "to": format_ts_us(HI)}),
    ("/settlements", {"limit": 6, "from": format_ts_us(LO + 3600 * 10**6)}),
    ("/payouts", {"status": "pending", "created_to": format_ts_us(HI + 3600 * 10**6), "limit": 2}),
    ("/payouts", {"status": "settled", "limit": 25}),
    ("/payouts", {"limit": 25, "created_from": format_ts_us(LO)}),
    ("/payouts", {"status": "lost"}),
    ("/settlements", {"cursor": "nonsense"}),
])
def test_payout_pages_are_the_same(servers, path, params):
    plain, indexed = servers["payout"]
    assert _walk_payouts(indexed, path, params) == _walk_payouts(plain, path, params)


def test_the_data_set_is_what_the_pipeline_pulls(servers):
    plain, _ = servers["stripe"]
    status, body = _get(plain, "/v1/balance_transactions", {"limit": 1}, "sk_test_sandbox")
    assert status == 200 and body["data"][0]["object"] == "balance_transaction"
    assert json.dumps(body["data"][0])  # served as plain JSON
