"""The payout-provider sandbox over real HTTP (httpx)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys

import httpx
import pytest

from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.sandboxes import SandboxDataError, start_payout_sandbox
from finance_pipeline.sandboxes.payout_sandbox import PayoutSandboxApp


def api(sandbox, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {token or sandbox.token}"}, timeout=10
    )


def body(pid: str = "pay_1", **over) -> dict:
    return {"payout_id": pid, "amount_minor": 12_345, "currency": "USD", "destination": "acct_9",
            "metadata": {"run": "2026-01-01"}, **over}


def seeded(pid: str, created_at: str, status: str = "pending", settled_at: str | None = None, amount: int = 100):
    return {"payout_id": pid, "amount_minor": amount, "currency": "EUR", "destination": "acct_1",
            "created_at": created_at, "status": status, "settled_at": settled_at}


def test_create_is_idempotent_on_payout_id(payout_sandbox):
    with api(payout_sandbox) as c:
        first = c.post("/payouts", json=body())
        assert first.status_code == 201
        p = first.json()
        assert (p["id"], p["payout_id"], p["amount_minor"], p["currency"], p["status"]) == (
            "pay_1", "pay_1", 12_345, "USD", "pending"
        )
        assert p["settled_at"] is None and p["created_at"] == p["updated_at"]
        parse_ts_us(p["created_at"])  # RFC 3339 with Z

        again = c.post("/payouts", json=body())
        assert again.status_code == 200 and again.json() == p

        clash = c.post("/payouts", json=body(amount_minor=12_346))
        assert clash.status_code == 409
        err = clash.json()["error"]
        assert err["code"] == "idempotency_conflict" and err["field"] == "amount_minor"
        assert "pay_1" in err["message"]
        assert c.get("/payouts/pay_1").json() == p


@pytest.mark.parametrize(
    "override, field",
    [
        ({"amount_minor": 10.5}, "amount_minor"),
        ({"amount_minor": 100.0}, "amount_minor"),
        ({"amount_minor": True}, "amount_minor"),
        ({"amount_minor": "100"}, "amount_minor"),
        ({"amount_minor": 0}, "amount_minor"),
        ({"amount_minor": -5}, "amount_minor"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "ABC"}, "currency"),
        ({"destination": ""}, "destination"),
        ({"metadata": []}, "metadata"),
        ({"payout_id": "has space"}, "payout_id"),
        ({"amount": 5}, "amount"),
    ],
)
def test_create_validation_names_the_field(payout_sandbox, override, field):
    with api(payout_sandbox) as c:
        resp = c.post("/payouts", json=body(**override))
        assert resp.status_code == 422
        err = resp.json()["error"]
        assert err["field"] == field and field in err["message"]
        assert c.get("/payouts").json()["data"] == []


def test_not_json_and_unknown_payout(payout_sandbox):
    with api(payout_sandbox) as c:
        bad = c.post("/payouts", content=b"{nope", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        missing = c.get("/payouts/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert c.post("/payouts/nope/settle").status_code == 404


def test_bearer_token_required(payout_sandbox):
    assert httpx.get(f"{payout_sandbox.url}/payouts").status_code == 401
    with api(payout_sandbox, token="wrong") as c:
        resp = c.get("/settlements")
        assert resp.status_code == 401
        assert resp.json()["error"] == {
            "code": "unauthorized", "message": "invalid bearer token; check the payout provider token", "field": None
        }


def test_settle_creates_a_settlement_and_is_idempotent(payout_sandbox):
    with api(payout_sandbox) as c:
        c.post("/payouts", json=body())
        first = c.post("/payouts/pay_1/settle", json={"settled_at": "2026-01-02T03:04:05Z"})
        assert first.status_code == 200
        assert first.json() == {
            "id": "stl_pay_1", "payout_id": "pay_1", "amount_minor": 12_345, "currency": "USD",
            "status": "settled", "settled_at": "2026-01-02T03:04:05Z",
        }
        assert c.post("/payouts/pay_1/settle").json() == first.json()
        payout = c.get("/payouts/pay_1").json()
        assert (payout["status"], payout["settled_at"], payout["settlement_id"]) == (
            "settled", "2026-01-02T03:04:05Z", "stl_pay_1"
        )
        # A settled payout cannot fail later, nor settle at another time.
        assert c.post("/payouts/pay_1/settle", json={"fail": True}).status_code == 409
        moved = c.post("/payouts/pay_1/settle", json={"settled_at": "2026-01-03T00:00:00Z"})
        assert moved.status_code == 409 and moved.json()["error"]["field"] == "settled_at"
        bad = c.post("/payouts/pay_1/settle", json={"settled_at": "2026-01-03 00:00"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "settled_at"


def test_failed_settlement(payout_sandbox):
    with api(payout_sandbox) as c:
        c.post("/payouts", json=body("pay_f"))
        failed = c.post("/payouts/pay_f/settle", json={"fail": True, "settled_at": "2026-01-02T00:00:00Z"})
        assert failed.status_code == 200 and failed.json()["status"] == "failed"
        assert c.get("/payouts/pay_f").json()["status"] == "failed"
        assert c.get("/settlements").json()["data"] == [failed.json()]
        assert c.post("/payouts/pay_f/settle").status_code == 409


def test_stuck_payout_stays_pending(payout_sandbox):
    with api(payout_sandbox) as c:
        c.post("/payouts", json=body("pay_s"))
        assert payout_sandbox.mark_stuck(["pay_s"]) == ["pay_s"]
        stuck = c.post("/payouts/pay_s/settle")
        assert stuck.status_code == 202
        assert stuck.json()["status"] == "pending" and stuck.json()["settled_at"] is None
        assert c.get("/settlements").json()["data"] == []
        payout_sandbox.mark_stuck(["pay_s"], stuck=False)
        assert c.post("/payouts/pay_s/settle").json()["status"] == "settled"


def test_stuck_from_the_data_file_applies_at_creation(tmp_path):
    path = tmp_path / "payouts.json"
    path.write_text(json.dumps({"payouts": [], "stuck_payout_ids": ["pay_later"]}))
    with start_payout_sandbox(path) as sb, api(sb) as c:
        assert c.post("/payouts", json=body("pay_later")).status_code == 201
        assert c.post("/payouts/pay_later/settle").status_code == 202


def _settle_seven(sandbox) -> None:
    settled = [
        # Two share a timestamp: the tie is broken by id.
        ("p3", "2026-01-01T10:00:00Z"), ("p1", "2026-01-01T10:00:00Z"), ("p2", "2026-01-01T11:00:00Z"),
        ("p4", "2026-01-01T23:59:59.999999Z"), ("p5", "2026-01-02T00:00:00Z"), ("p0", "2026-01-01T00:00:00Z"),
        ("p6", "2025-12-31T23:59:59Z"),
    ]
    sandbox.add_objects(
        payouts=[seeded(pid, "2025-12-30T00:00:00Z", "settled", ts) for pid, ts in settled]
        + [seeded("p_pending", "2026-01-01T05:00:00Z")]
    )


def test_settlements_page_by_cursor_in_a_half_open_window(payout_sandbox):
    _settle_seven(payout_sandbox)
    with api(payout_sandbox) as c:
        window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "limit": 2}
        pages, cursor = [], None
        while True:
            resp = c.get("/settlements", params={**window, **({"cursor": cursor} if cursor else {})})
            assert resp.status_code == 200
            pages.append(resp.json())
            cursor = resp.json()["next_cursor"]
            if cursor is None:
                break
        assert [len(p["data"]) for p in pages] == [2, 2, 1]
        got = [s["id"] for p in pages for s in p["data"]]
        # p5 at exactly 'to' is excluded, p0 at exactly 'from' included; p6 is the day before.
        assert got == ["stl_p0", "stl_p1", "stl_p3", "stl_p2", "stl_p4"]
        assert pages[1]["data"][0]["settled_at"] == "2026-01-01T10:00:00Z"

        reused = c.get("/settlements", params={"from": "2026-01-01T05:00:00Z", "cursor": pages[0]["next_cursor"]})
        assert reused.status_code == 400 and reused.json()["error"]["field"] == "cursor"
        garbage = c.get("/settlements", params={"cursor": "not-a-cursor"})
        assert garbage.status_code == 400 and garbage.json()["error"]["field"] == "cursor"
        bad_ts = c.get("/settlements", params={"from": "yesterday"})
        assert bad_ts.status_code == 400 and bad_ts.json()["error"]["field"] == "from"
        assert c.get("/settlements", params={"limit": 0}).json()["error"]["field"] == "limit"


def test_list_payouts_by_status_and_created_window(payout_sandbox):
    payout_sandbox.add_objects(
        payouts=[
            seeded("a", "2026-01-01T01:00:00Z"),
            seeded("b", "2026-01-01T02:00:00Z"),
            seeded("c", "2026-01-01T03:00:00Z", "settled", "2026-01-01T04:00:00Z"),
            seeded("d", "2026-01-02T00:00:00Z"),
        ]
    )
    with api(payout_sandbox) as c:
        first = c.get("/payouts", params={"status": "pending", "created_to": "2026-01-02T00:00:00Z", "limit": 1})
        assert [p["id"] for p in first.json()["data"]] == ["a"]
        second = c.get(
            "/payouts",
            params={"status": "pending", "created_to": "2026-01-02T00:00:00Z", "limit": 1,
                    "cursor": first.json()["next_cursor"]},
        )
        assert [p["id"] for p in second.json()["data"]] == ["b"] and second.json()["next_cursor"] is None
        assert [p["id"] for p in c.get("/payouts").json()["data"]] == ["a", "b", "c", "d"]
        assert c.get("/payouts", params={"status": "lost"}).status_code == 400


def test_state_survives_a_restart(tmp_path):
    path = tmp_path / "payouts.json"
    assert not path.exists()
    with start_payout_sandbox(path) as sb:
        assert json.loads(path.read_text()) == {"payouts": [], "stuck_payout_ids": []}
        with api(sb) as c:
            c.post("/payouts", json=body("pay_a"))
            c.post("/payouts", json=body("pay_b", amount_minor=7))
            c.post("/payouts/pay_a/settle", json={"settled_at": "2026-01-02T00:00:00Z"})
            sb.mark_stuck(["pay_b"])
            before = (c.get("/payouts").json(), c.get("/settlements").json())
    with start_payout_sandbox(path) as again, api(again) as c:
        assert (c.get("/payouts").json(), c.get("/settlements").json()) == before
        assert c.post("/payouts/pay_b/settle").status_code == 202  # still stuck
        assert c.post("/payouts", json=body("pay_a")).status_code == 200  # idempotency remembered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payouts.json"]


def test_bad_state_file_is_reported_with_the_field(tmp_path):
    path = tmp_path / "payouts.json"
    path.write_text(json.dumps({"payouts": [seeded("x", "2026-01-01T00:00:00Z", amount=1.5)]}))
    with pytest.raises(SandboxDataError, match="amount_minor"):
        PayoutSandboxApp(path)
    path.write_text(json.dumps({"payouts": [seeded("x", "2026-01-01T00:00:00Z", status="settled")]}))
    with pytest.raises(SandboxDataError, match="needs 'settled_at'"):
        PayoutSandboxApp(path)


def test_faults_and_request_log(payout_sandbox):
    payout_sandbox.set_faults(rate_limit=1, retry_after=2, server_error=1, server_error_status=503)
    with api(payout_sandbox) as c:
        limited = c.get("/settlements")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert limited.json()["error"]["code"] == "rate_limited"
        assert c.get("/settlements").status_code == 503
        assert c.get("/settlements", params={"limit": 5}).status_code == 200
    log = payout_sandbox.requests()
    assert [(e["method"], e["path"], e["status"], e["fault"]) for e in log] == [
        ("GET", "/settlements", 429, "rate_limit"),
        ("GET", "/settlements", 503, "server_error"),
        ("GET", "/settlements", 200, None),
    ]
    assert log[2]["query"] == "limit=5" and log[2]["params"] == {"limit": "5"}
    payout_sandbox.clear_requests()
    assert payout_sandbox.requests() == []


def test_delay_stays_set_until_cleared(payout_sandbox):
    payout_sandbox.set_faults(delay_ms=1)
    with api(payout_sandbox) as c:
        assert c.get("/payouts").status_code == 200
        assert c.get("/payouts").status_code == 200
    assert payout_sandbox.faults()["delay_ms"] == 1  # not consumed like the counted faults
    assert payout_sandbox.clear_faults()["delay_ms"] == 0


@pytest.mark.slow
def test_cli_serves_until_interrupted(tmp_path):
    data = tmp_path / "cli.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from finance_pipeline.cli import main; main()",
         "sandbox", "payout", "--port", "0", "--data", str(data), "--token", "tok"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as a terminal delivers it: a pytest started in the background by a shell
        # without job control ignores SIGINT, and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=60), "the CLI printed nothing"
        line = proc.stdout.readline()
        url = line.split(" listening on ")[1].split()[0]
        assert httpx.post(f"{url}/payouts", json=body(), headers={"Authorization": "Bearer tok"}).status_code == 201
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [p["id"] for p in json.loads(data.read_text())["payouts"]] == ["pay_1"]
