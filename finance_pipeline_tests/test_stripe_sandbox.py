"""The Stripe sandbox, exercised through the official stripe SDK over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
import stripe

from finance_pipeline.sandboxes import SandboxDataError, start_stripe_sandbox
from finance_pipeline.sandboxes.stripe_sandbox import StripeSandboxApp

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def txn(i: int, *, created: int | None = None, type: str = "charge", **extra) -> dict:
    """A data-file balance transaction; fee 3% so net differs from amount."""
    amount = 1000 + i
    return {
        "id": f"txn_{i:04d}",
        "amount": amount if type != "refund" else -amount,
        "fee": 30 if type == "charge" else 0,
        "currency": "USD",
        "created": T0 + i * 60 if created is None else created,
        "type": type,
        "source": f"{'ch' if type == 'charge' else 're'}_{i:04d}",
        **extra,
    }


def client(sandbox, api_key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key or sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=0
    )


def ids(objs) -> list[str]:
    return [o["id"] for o in objs]


def expected_order(records: list[dict]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: (r["created"], r["id"]), reverse=True)]


def test_pages_newest_first_with_has_more(stripe_sandbox):
    records = [txn(i) for i in range(23)]
    # Two transactions in the same second: Stripe breaks the tie by id, descending.
    records += [txn(100, created=T0 + 5 * 60), txn(101, created=T0 + 5 * 60)]
    stripe_sandbox.add_objects(balance_transactions=records)
    c = client(stripe_sandbox)

    pages, after = [], None
    while True:
        params = {"limit": 10, **({"starting_after": after} if after else {})}
        page = c.v1.balance_transactions.list(params=params)
        pages.append(page)
        if not page.has_more:
            break
        after = page.data[-1].id

    assert [len(p.data) for p in pages] == [10, 10, 5]
    assert [p.has_more for p in pages] == [True, True, False]
    assert pages[0].url == "/v1/balance_transactions"
    got = [o.id for p in pages for o in p.data]
    assert got == expected_order(records)
    assert got.index("txn_0101") + 1 == got.index("txn_0100")


def test_ending_before_returns_the_newer_page(stripe_sandbox):
    records = [txn(i) for i in range(6)]
    stripe_sandbox.add_objects(balance_transactions=records)
    c = client(stripe_sandbox)
    page = c.v1.balance_transactions.list(params={"limit": 2, "ending_before": "txn_0002"})
    # Newer than txn_0002 are 5, 4, 3; the two nearest the cursor come back, still newest first.
    assert [o.id for o in page.data] == ["txn_0004", "txn_0003"]
    assert page.has_more is True


def test_default_limit_is_ten(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=[txn(i) for i in range(12)])
    page = client(stripe_sandbox).v1.balance_transactions.list()
    assert len(page.data) == 10 and page.has_more


@pytest.mark.parametrize(
    "created, expected",
    [
        ({"gte": T0 + 60, "lt": T0 + 180}, ["txn_0002", "txn_0001"]),
        ({"gt": T0 + 60, "lte": T0 + 180}, ["txn_0003", "txn_0002"]),
        ({"gte": T0 + 240}, ["txn_0004"]),
        ({"lt": T0 + 60}, ["txn_0000"]),
    ],
)
def test_created_filters(stripe_sandbox, created, expected):
    stripe_sandbox.add_objects(balance_transactions=[txn(i) for i in range(5)])
    page = client(stripe_sandbox).v1.balance_transactions.list(params={"created": created})
    assert [o.id for o in page.data] == expected


def test_type_filter(stripe_sandbox):
    stripe_sandbox.add_objects(
        balance_transactions=[txn(0), txn(1, type="refund"), txn(2), txn(3, type="refund")]
    )
    page = client(stripe_sandbox).v1.balance_transactions.list(params={"type": "refund"})
    assert [o.id for o in page.data] == ["txn_0003", "txn_0001"]
    assert {o.reporting_category for o in page.data} == {"refund"}


def test_payout_filter_uses_the_sandbox_side_links(stripe_sandbox):
    po_txn = {"id": "txn_po1", "amount": -2000, "currency": "usd", "created": T0 + 900, "type": "payout",
              "source": "po_1"}
    stripe_sandbox.add_objects(
        balance_transactions=[txn(0), txn(1, _payout="po_1"), txn(2), txn(3), po_txn],
        payouts=[
            {"id": "po_1", "amount": 2000, "currency": "usd", "created": T0 + 900,
             "balance_transaction": "txn_po1", "balance_transactions": ["txn_0002"]},
            {"id": "po_2", "amount": 1, "currency": "usd", "created": T0 + 960, "balance_transactions": ["txn_0003"]},
        ],
    )
    c = client(stripe_sandbox)
    page = c.v1.balance_transactions.list(params={"payout": "po_1"})
    assert [o.id for o in page.data] == ["txn_po1", "txn_0002", "txn_0001"]
    # The link is sandbox-side only: real balance transactions and payouts carry no such member.
    for o in page.data:
        assert "payout" not in o and "_payout" not in o
    served_payout = c.v1.payouts.retrieve("po_1")
    assert "balance_transactions" not in served_payout
    assert served_payout.balance_transaction == "txn_po1"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.balance_transactions.list(params={"payout": "po_nope"})
    assert exc.value.http_status == 404 and exc.value.param == "payout"


def test_objects_are_shaped_like_stripe(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=[txn(7)])
    got = client(stripe_sandbox).v1.balance_transactions.retrieve("txn_0007").to_dict()
    assert got == {
        "id": "txn_0007",
        "object": "balance_transaction",
        "amount": 1007,
        "available_on": T0 + 420,
        "balance_type": "payments",  # required by Stripe's schema; the data file leaves it out
        "created": T0 + 420,
        "currency": "usd",  # the data file says "USD"; Stripe sends lower case
        "description": None,
        "exchange_rate": None,
        "fee": 30,
        "fee_details": [
            {"amount": 30, "application": None, "currency": "usd",
             "description": "Stripe processing fees", "type": "stripe_fee"}
        ],
        "net": 977,
        "reporting_category": "charge",
        "source": "ch_0007",
        "status": "available",
        "type": "charge",
    }


def test_payouts_list_and_status_filter(stripe_sandbox):
    stripe_sandbox.add_objects(
        payouts=[
            {"id": "po_a", "amount": 100, "currency": "usd", "created": T0, "status": "paid"},
            {"id": "po_b", "amount": 200, "currency": "usd", "created": T0 + 1, "status": "in_transit"},
            {"id": "po_c", "amount": 300, "currency": "usd", "created": T0 + 2, "status": "paid"},
        ]
    )
    c = client(stripe_sandbox)
    assert [p.id for p in c.v1.payouts.list().data] == ["po_c", "po_b", "po_a"]
    assert [p.id for p in c.v1.payouts.list(params={"status": "paid"}).data] == ["po_c", "po_a"]
    assert [p.id for p in c.v1.payouts.list(params={"created": {"lt": T0 + 2}, "limit": 1}).data] == ["po_b"]
    po = c.v1.payouts.retrieve("po_b")
    assert (po.object, po.amount, po.currency, po.arrival_date, po.method, po.type) == (
        "payout", 200, "usd", T0 + 1, "standard", "bank_account"
    )
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.payouts.list(params={"status": "lost"})
    assert exc.value.param == "status"


def test_wrong_key_is_an_authentication_error(stripe_sandbox):
    with pytest.raises(stripe.AuthenticationError) as exc:
        client(stripe_sandbox, api_key="sk_test_wrong_key_123").v1.balance_transactions.list()
    assert exc.value.http_status == 401
    assert exc.value.json_body["error"]["type"] == "authentication_error"
    assert "sk_test_wrong_key_123" not in exc.value.user_message  # the key is masked


def test_auth_over_plain_http(stripe_sandbox):
    url = f"{stripe_sandbox.url}/v1/balance_transactions"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    # Stripe also accepts the key as the basic-auth user name.
    assert httpx.get(url, auth=(stripe_sandbox.api_key, "")).status_code == 200
    assert httpx.get(url, auth=("sk_test_other", "")).status_code == 401
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {stripe_sandbox.api_key}"})
    assert bearer.json() == {"object": "list", "data": [], "has_more": False, "url": "/v1/balance_transactions"}


def test_api_key_is_configurable(tmp_path):
    with start_stripe_sandbox(tmp_path / "s.json", api_key="sk_test_custom") as sb:
        assert sb.api_key == "sk_test_custom"
        client(sb).v1.balance_transactions.list()
        with pytest.raises(stripe.AuthenticationError):
            client(sb, api_key="sk_test_sandbox").v1.balance_transactions.list()


@pytest.mark.parametrize(
    "params, param",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"created": {"gte": "yesterday"}}, "created[gte]"),
        ({"colour": "red"}, "colour"),
        ({"starting_after": "txn_missing"}, "starting_after"),
    ],
)
def test_bad_parameters_are_invalid_request_errors(stripe_sandbox, params, param):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client(stripe_sandbox).v1.balance_transactions.list(params=params)
    assert exc.value.param == param
    assert exc.value.json_body["error"]["type"] == "invalid_request_error"


def test_unknown_id_is_404_resource_missing(stripe_sandbox):
    c = client(stripe_sandbox)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.balance_transactions.retrieve("txn_nope")
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.payouts.retrieve("po_nope")
    assert exc.value.http_status == 404 and "po_nope" in exc.value.user_message


def test_rate_limit_and_server_error_faults(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=[txn(1)])
    stripe_sandbox.set_faults(rate_limit=1, retry_after=3, server_error=1)
    c = client(stripe_sandbox)
    with pytest.raises(stripe.RateLimitError) as rl:
        c.v1.balance_transactions.list()
    assert rl.value.http_status == 429
    assert rl.value.headers["Retry-After"] == "3"
    assert rl.value.json_body["error"]["type"] == "rate_limit_error"
    with pytest.raises(stripe.APIError) as se:
        c.v1.balance_transactions.list()
    assert se.value.http_status == 500 and se.value.json_body["error"]["type"] == "api_error"
    assert [o.id for o in c.v1.balance_transactions.list().data] == ["txn_0001"]
    log = stripe_sandbox.requests()
    assert [(e["status"], e["fault"]) for e in log] == [(429, "rate_limit"), (500, "server_error"), (200, None)]
    assert log[0]["path"] == "/v1/balance_transactions"


def test_disconnect_fault_and_clearing(stripe_sandbox):
    stripe_sandbox.set_faults(disconnect=2)
    c = client(stripe_sandbox)
    with pytest.raises(stripe.APIConnectionError):
        c.v1.balance_transactions.list()
    stripe_sandbox.clear_faults()
    assert c.v1.balance_transactions.list().data == []
    assert stripe_sandbox.faults()["disconnect"] == 0


def test_faults_spare_admin_endpoints_and_reject_typos(stripe_sandbox):
    stripe_sandbox.set_faults(server_error=5)
    # Admin calls are neither faulted nor logged, so a test can always steer the sandbox.
    stripe_sandbox.add_objects(balance_transactions=[txn(1)])
    assert stripe_sandbox.requests() == []
    assert stripe_sandbox.faults()["server_error"] == 5
    resp = httpx.post(f"{stripe_sandbox.url}/_sandbox/faults", json={"rate_limits": 1})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "rate_limits"
    resp = httpx.post(f"{stripe_sandbox.url}/_sandbox/faults", json={"rate_limit": 1.5})
    assert resp.status_code == 400


def test_data_file_loaded_at_start_and_additions_persisted(tmp_path):
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps({"balance_transactions": [txn(1)], "payouts": []}))
    with start_stripe_sandbox(path) as sb:
        assert [o.id for o in client(sb).v1.balance_transactions.list().data] == ["txn_0001"]
        result = sb.add_objects(balance_transactions=[txn(2)])
        assert result == {"added": {"balance_transactions": ["txn_0002"], "payouts": []}, "unchanged": []}
        # Re-adding the same object is a no-op; changing it is a conflict.
        assert sb.add_objects(balance_transactions=[txn(2)])["unchanged"] == ["txn_0002"]
        clash = httpx.post(f"{sb.url}/_sandbox/objects", json={"balance_transactions": [txn(2, fee=31)]})
        assert clash.status_code == 409 and "txn_0002" in clash.json()["error"]["message"]
    assert [t["id"] for t in json.loads(path.read_text())["balance_transactions"]] == ["txn_0001", "txn_0002"]
    assert [p.name for p in tmp_path.iterdir()] == ["stripe.json"]  # no temp file left behind
    with start_stripe_sandbox(path) as again:
        assert [o.id for o in client(again).v1.balance_transactions.list().data] == ["txn_0002", "txn_0001"]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"amount": 10.5}, "'amount'"),
        ({"amount": True}, "'amount'"),
        ({"net": 1}, "'net'"),
        ({"id": "ch_1"}, "'id'"),
        ({"currency": "dollars"}, "'currency'"),
        ({"_payout": "po_missing"}, "po_missing"),
    ],
)
def test_malformed_objects_are_rejected_with_the_field_named(stripe_sandbox, bad, field):
    resp = httpx.post(f"{stripe_sandbox.url}/_sandbox/objects", json={"balance_transactions": [{**txn(1), **bad}]})
    assert resp.status_code == 400
    assert field in resp.json()["error"]["message"]
    assert not stripe_sandbox.data_path.exists()  # nothing was persisted


def test_malformed_data_file_fails_at_start(tmp_path):
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps({"balance_transactions": [txn(1), txn(1)]}))
    with pytest.raises(SandboxDataError, match="duplicate id 'txn_0001'"):
        StripeSandboxApp(path)


# --- conformance with Stripe's own OpenAPI description --------------------------------------------

REFERENCE = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "reference" / "stripe"


def _stripe_schema(list_name: str) -> dict:
    """The list schema of ``openapi-subset.json`` as JSON Schema: ``nullable`` becomes a null
    alternative, references to the subset's schemas become ``$defs``, references to objects it
    leaves out (an expanded ``source``) accept any object."""
    spec = json.loads((REFERENCE / "openapi-subset.json").read_text())
    schemas = spec["components"]["schemas"]

    def conv(node):
        if isinstance(node, list):
            return [conv(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            return {"$ref": f"#/$defs/{name}"} if name in schemas else {"type": "object"}
        out = {k: conv(v) for k, v in node.items() if not k.startswith("x-") and k not in ("nullable", "format")}
        return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out

    root = conv(spec["lists"][list_name])
    root["$defs"] = {name: conv(s) for name, s in schemas.items()}
    return root


def _all_pages(sandbox, path: str) -> list[dict]:
    pages, after = [], None
    while True:
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        resp = httpx.get(sandbox.url + path, params=params, headers={"Authorization": f"Bearer {sandbox.api_key}"})
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        if not pages[-1]["has_more"]:
            return pages
        after = pages[-1]["data"][-1]["id"]


def test_every_object_the_sandbox_serves_conforms_to_stripes_openapi_subset(tmp_path):
    import jsonschema
    from datetime import date

    from finance_pipeline.demo.seed import seed
    from finance_pipeline.ledger.engine import create_ledger_engine

    if not REFERENCE.is_dir():
        pytest.fail(f"the Stripe reference data is missing at {REFERENCE}")
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    res = seed(engine, tmp_path / "stripe.json", tmp_path / "payouts.json", start=date(2026, 11, 1), days=3,
               seed=7, inject=1)
    engine.dispose()
    sandbox = start_stripe_sandbox(res.stripe_data)
    try:
        for path, name in (("/v1/balance_transactions", "GET /v1/balance_transactions"),
                           ("/v1/payouts", "GET /v1/payouts")):
            validator = jsonschema.Draft202012Validator(_stripe_schema(name))
            pages = _all_pages(sandbox, path)
            assert sum(len(p["data"]) for p in pages) > 0, path
            for page in pages:
                problems = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(page)]
                assert not problems, (path, problems[:5])
            # The check itself can fail: an object without a required member does not pass.
            broken = dict(pages[0], data=[{k: v for k, v in pages[0]["data"][0].items() if k != "currency"}])
            assert not validator.is_valid(broken)
    finally:
        sandbox.stop()
