"""The journal and proof endpoints: every rejection has its status and changes nothing stored."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from finance_pipeline.api import ApiSettings, create_app
from finance_pipeline.domain.journal import parse_entry
from finance_pipeline.export import registry
from finance_pipeline.ledger.audit import list_events
from finance_pipeline.payouts.policy import PayoutPolicy
from finance_pipeline_tests.api.helpers import Clock, bearer, serve
from finance_pipeline_tests.ledger.helpers import DAY, entry, line, row_counts

NOW = 1_793_700_000_000_000


def body(journal_id: str = "J-1", **overrides) -> dict:
    """A valid standard entry posted by ops:ana (the operator's token)."""
    return entry(journal_id, **{"posted_by": "ops:ana", **overrides})


def errors_of(resp: httpx.Response) -> list[tuple[str, str]]:
    return [(e["field"], e["message"]) for e in resp.json()["errors"]]


def fields_of(resp: httpx.Response) -> list[str]:
    return [f for f, _ in errors_of(resp)]


def build_app(engine, store, **settings):
    return create_app(engine, tokens=store,
                      settings=ApiSettings(payout_policy=PayoutPolicy(), clock=Clock(NOW), **settings))


@pytest.fixture
def api(ledger, tokens):
    """(client, engine, actor -> token) on each backend."""
    with TestClient(build_app(ledger, tokens[0])) as client:
        yield client, ledger, tokens[1]


@pytest.fixture
def sqlite_api(sqlite_api_ledger, tokens):
    with TestClient(build_app(sqlite_api_ledger, tokens[0])) as client:
        yield client, sqlite_api_ledger, tokens[1]


def post(client, token, payload, **kw) -> httpx.Response:
    content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post("/finance/journal", content=content, headers=bearer(token), **kw)


# --- accepted -------------------------------------------------------------------------------


def svc(journal_id: str = "J-1", **overrides) -> dict:
    """A standard entry as the pipeline's service identity books it (no review)."""
    return entry(journal_id, **{"posted_by": "system:import", **overrides})


def manual(journal_id: str = "J-1", **overrides) -> dict:
    """A person's entry: who posts it and who reviews it come from the tokens, not the body."""
    out = entry(journal_id, **overrides)
    out.pop("posted_by")
    out.pop("reviewed_by")
    return out


def review(client, token, journal_id, decision="approve", **extra) -> httpx.Response:
    return client.post(f"/finance/journal/{journal_id}/review", json={"decision": decision, **extra},
                       headers=bearer(token))


def test_the_service_identity_posts_201_then_identical_repeat_200_then_conflicting_repeat_409(api):
    client, engine, tok = api
    first = post(client, tok["system:import"], svc())
    assert first.status_code == 201, first.text
    parsed = parse_entry(svc())
    assert first.json() == {"status": "created", "journal_id": "J-1", "body_sha256": parsed.body_sha256(),
                            "entry": parsed.to_leaf()}
    assert [(e.actor, e.action) for e in list_events(engine, subject_type="journal_entry", subject_id="J-1")] == [
        ("system:import", "journal.post")]

    repeat = post(client, tok["system:import"], svc())
    assert (repeat.status_code, repeat.json()["status"]) == (200, "already_present")

    before = row_counts(engine)
    conflict = post(client, tok["system:import"], svc(amount=1300))
    assert conflict.status_code == 409
    assert fields_of(conflict) == ["journal_id"]
    assert "already posted with a different body" in conflict.json()["errors"][0]["message"]
    assert row_counts(engine) == before
    # posted_by may be left out: the token says who posts.
    implicit = post(client, tok["system:import"], {k: v for k, v in svc("J-2").items() if k != "posted_by"})
    assert implicit.status_code == 201 and implicit.json()["entry"]["posted_by"] == "system:import"
    # Adjustments are people's corrections: never without a review.
    adj = post(client, tok["system:import"], svc("J-adj", kind="adjustment", reviewed_by="fin:lena"))
    assert adj.status_code == 422 and fields_of(adj) == ["kind"]


@pytest.mark.parametrize("kind", ["standard", "adjustment", "reversal"])
def test_a_persons_entry_waits_for_a_second_person_and_is_posted_with_both_names_from_tokens(api, kind):
    client, engine, tok = api
    assert post(client, tok["system:import"], svc("J-0")).status_code == 201
    extra = {"reverses": "J-0", "lines": [line("revenue", "debit", 1250), line("cash", "credit", 1250)]} \
        if kind == "reversal" else {}
    payload = manual("J-m", kind=kind, memo="manual fix", **extra)
    before = row_counts(engine)
    sub = post(client, tok["ops:ana"], payload)
    assert sub.status_code == 202, sub.text
    assert sub.json()["status"] == "pending" and sub.json()["submitted_by"] == "ops:ana"
    assert sub.json()["review"] == "/finance/journal/J-m/review"
    assert sub.json()["entry"]["posted_by"] == "ops:ana" and sub.json()["entry"]["reviewed_by"] is None
    assert row_counts(engine)["journal_entries"] == before["journal_entries"]  # not posted yet
    listed = client.get("/finance/journal", params={"from": DAY}, headers=bearer(tok["aud:alex"])).json()
    assert [e["journal_id"] for e in listed["entries"]] == ["J-0"]
    pending = client.get("/finance/journal/reviews", headers=bearer(tok["fin:lena"])).json()["reviews"]
    assert [p["journal_id"] for p in pending] == ["J-m"]
    assert post(client, tok["ops:ana"], payload).status_code == 200  # the same submission again

    # Not by the author, not by an operator: by a finance lead or security engineer.
    own = review(client, tok["ops:ana"], "J-m")
    assert own.status_code == 403
    assert review(client, tok["ops:omar"], "J-m").status_code == 403
    done = review(client, tok["fin:lena"], "J-m", comment="checked against the bank statement")
    assert done.status_code == 201, done.text
    assert done.json()["status"] == "posted" and done.json()["reviewed_by"] == "fin:lena"
    listed = client.get("/finance/journal", params={"from": DAY}, headers=bearer(tok["aud:alex"])).json()
    posted = {e["journal_id"]: e for e in listed["entries"]}
    assert (posted["J-m"]["posted_by"], posted["J-m"]["reviewed_by"]) == ("ops:ana", "fin:lena")
    actions = [(e.actor, e.action) for e in list_events(engine, subject_type="journal_entry", subject_id="J-m")]
    assert actions == [("ops:ana", "journal.submit"), ("fin:lena", "journal.post"), ("fin:lena", "journal.approve")]
    again = review(client, tok["sec:sam"], "J-m")
    assert again.status_code == 409 and "already posted by fin:lena" in again.json()["errors"][0]["message"]


def test_a_typed_reviewer_or_poster_in_the_body_is_refused(sqlite_api):
    """What one operator could do before: name a lead who did nothing, or post alone."""
    client, engine, tok = sqlite_api
    before = row_counts(engine)
    named = post(client, tok["ops:ana"], {**manual("J-adj", kind="adjustment"), "reviewed_by": "fin:lena"})
    assert named.status_code == 422 and fields_of(named) == ["reviewed_by"]
    assert "is set by the review" in errors_of(named)[0][1]
    assert row_counts(engine) == before


def test_a_rejected_or_expired_submission_is_never_posted(sqlite_api):
    client, engine, tok = sqlite_api
    assert post(client, tok["ops:ana"], manual("J-r")).status_code == 202
    rejected = review(client, tok["sec:sam"], "J-r", decision="reject", comment="wrong day")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert post(client, tok["ops:ana"], manual("J-x")).status_code == 202
    client.app.state.settings.clock.now_us += 86_400 * 1_000_000  # a day later: lapsed
    late = review(client, tok["fin:lena"], "J-x")
    assert late.status_code == 409 and "expired" in late.json()["errors"][0]["message"]
    listed = client.get("/finance/journal", params={"from": DAY}, headers=bearer(tok["aud:alex"])).json()
    assert listed["entries"] == []
    assert review(client, tok["fin:lena"], "J-none").status_code == 404
    bad = client.post("/finance/journal/J-x/review", json={"decision": "maybe"}, headers=bearer(tok["fin:lena"]))
    assert bad.status_code == 422 and fields_of(bad) == ["decision"]


# --- rejected: nothing stored ---------------------------------------------------------------


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic b3BzOmFuYQ==", "Bearer not-a-token",
    "Bearer fpt_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
])
def test_missing_or_bad_token_is_401_and_changes_nothing(sqlite_api, header):
    client, engine, _ = sqlite_api
    before = row_counts(engine)
    headers = {} if header is None else {"Authorization": header}
    resp = client.post("/finance/journal", content=json.dumps(body()), headers=headers)
    assert resp.status_code == 401
    assert fields_of(resp) == ["Authorization"]
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/finance/journal", params={"from": DAY}, headers=headers).status_code == 401
    assert row_counts(engine) == before


def test_a_token_with_a_wrong_secret_or_revoked_is_401(sqlite_api, tokens):
    client, engine, tok = sqlite_api
    token = tok["ops:ana"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert post(client, tampered, body()).status_code == 401
    store = tokens[0]
    store.revoke(token.split("_")[1])
    before = row_counts(engine)
    assert post(client, token, body()).status_code == 401
    assert row_counts(engine) == before


@pytest.mark.parametrize(("actor", "payload", "field"), [
    ("aud:alex", body(posted_by="aud:alex"), "Authorization"),      # auditors only read
    ("sec:sam", body(posted_by="sec:sam"), "Authorization"),        # posting needs operator/finance-lead
    ("root:rita", body(posted_by="root:rita"), "Authorization"),
    ("ops:ana", body(posted_by="ops:omar"), "posted_by"),           # nobody posts as someone else
])
def test_missing_role_or_impersonation_is_403_and_changes_nothing(sqlite_api, actor, payload, field):
    client, engine, tok = sqlite_api
    before = row_counts(engine)
    resp = post(client, tok[actor], payload)
    assert resp.status_code == 403, resp.text
    assert fields_of(resp) == [field]
    assert row_counts(engine) == before


def test_unbalanced_entry_is_422_naming_lines(api):
    client, engine, tok = api
    before = row_counts(engine)
    resp = post(client, tok["ops:ana"], body(lines=[line("cash", "debit", 1000), line("revenue", "credit", 999)]))
    assert resp.status_code == 422
    assert errors_of(resp) == [("lines", "unbalanced in USD: debits 1000 != credits 999; every currency's "
                                          "debits must equal its credits")]
    assert row_counts(engine) == before


@pytest.mark.parametrize(("payload", "fields"), [
    (body(lines=[line("cash", "debit", 12.5), line("revenue", "credit", 12.5)]),
     ["lines[0].amount_minor", "lines[1].amount_minor"]),
    (body(lines=[line("nope", "debit", 100), line("revenue", "credit", 100)]), ["lines[0].account_id"]),
    (body(lines=[line("cash", "debit", 100, "usd"), line("revenue", "credit", 100, "usd")]),
     ["lines[0].currency", "lines[1].currency"]),
    (body(ts="2026-11-02T10:15:00"), ["ts"]),
    (body(extra=1), ["extra"]),
    (body(memo="a\u0000b"), ["memo"]),
    (b'{"journal_id": "J-1", "journal_id": "J-2"}', ["$"]),
    (b'{"journal_id": NaN}', ["$"]),
    (b"\xff\xfe", ["$"]),
    (b"", ["$"]),
    (b"[" * 5000 + b"]" * 5000, ["$"]),
    ([body()], ["$"]),
])
def test_invalid_input_is_422_naming_the_field_and_changes_nothing(sqlite_api, payload, fields):
    client, engine, tok = sqlite_api
    before = row_counts(engine)
    resp = post(client, tok["ops:ana"], payload)
    assert resp.status_code == 422, resp.text
    assert fields_of(resp) == fields
    assert row_counts(engine) == before


def test_an_entry_dated_in_a_closed_day_is_409(api):
    client, engine, tok = api
    registry.register(engine, proof_id=f"proof-{DAY}", day=DAY, merkle_root="0" * 64,
                      statement_sha256="1" * 64, location="file:///proofs", fmt="finance-proof/1",
                      actor="system:test")
    before = row_counts(engine)
    resp = post(client, tok["ops:ana"], body())
    assert resp.status_code == 409
    assert fields_of(resp) == ["ts"]
    assert f"day {DAY} is closed by proof 'proof-{DAY}'" in resp.json()["errors"][0]["message"]
    assert row_counts(engine) == before


def test_oversized_bodies_are_413_with_or_without_content_length(sqlite_api):
    client, engine, tok = sqlite_api
    before = row_counts(engine)
    big = json.dumps(body(memo="x" * 70_000)).encode()
    resp = post(client, tok["ops:ana"], big)
    assert resp.status_code == 413 and fields_of(resp) == ["$"]

    def chunks():
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    chunked = client.post("/finance/journal", content=chunks(), headers=bearer(tok["ops:ana"]))
    assert chunked.status_code == 413
    assert row_counts(engine) == before


def test_the_body_limit_holds_on_a_real_server_at_its_exact_boundary(sqlite_api_ledger, tokens):
    sqlite_ledger = sqlite_api_ledger
    store, tok = tokens
    app = build_app(sqlite_ledger, store, max_body_bytes=4096)
    raw = json.dumps(body()).encode()
    at_limit = raw + b" " * (4096 - len(raw))      # JSON may end in whitespace
    over = at_limit + b" "
    with serve(app) as url, httpx.Client(base_url=url, headers=bearer(tok["ops:ana"])) as http:
        before = row_counts(sqlite_ledger)
        assert http.post("/finance/journal", content=over).status_code == 413

        def stream():
            for i in range(0, len(over), 1000):
                yield over[i:i + 1000]

        resp = http.post("/finance/journal", content=stream())
        assert "content-length" not in resp.request.headers
        assert resp.status_code == 413
        # Past the drain allowance the server answers 413 at once and closes the connection; a
        # client still sending may see the close before the answer. Either way: refused.
        try:
            huge = http.post("/finance/journal", content=b"x" * (4 * 1024 * 1024)).status_code
        except httpx.TransportError:
            huge = "connection closed"
        assert huge in (413, "connection closed")
        assert row_counts(sqlite_ledger) == before

        assert http.post("/finance/journal", content=at_limit).status_code == 202  # accepted for review


# --- reading --------------------------------------------------------------------------------


def test_list_pages_entries_of_the_days_in_code_point_order(api):
    client, engine, tok = api
    posted = [
        svc("J-b", ts="2026-11-02T00:00:00Z"),
        svc("Z-1", ts="2026-11-02T10:00:00Z"),
        svc("a-1", ts="2026-11-02T10:00:00Z"),          # same ts: 'Z' < 'a' in code points
        svc("J-c", ts="2026-11-03T23:59:59.999999Z"),
        svc("J-d", ts="2026-11-03T12:00:00+02:00"),     # converted to 10:00Z
        svc("J-out", ts="2026-11-04T00:00:00Z"),        # the day after: not listed
    ]
    for payload in posted:
        assert post(client, tok["system:import"], payload).status_code == 201
    expected = ["J-b", "Z-1", "a-1", "J-d", "J-c"]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"from": "2026-11-02", "to": "2026-11-03", "limit": 2, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/finance/journal", params=params, headers=bearer(tok["aud:alex"]))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert (page["format"], page["from"], page["to"]) == ("finance-journal/1", "2026-11-02", "2026-11-03")
        seen += page["entries"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["journal_id"] for e in seen] == expected
    assert pages == 3
    assert seen[3] == parse_entry(posted[4]).to_leaf()  # the leaf: 11 members, UTC ts
    assert seen[3]["ts"] == "2026-11-03T10:00:00Z"

    one_day = client.get("/finance/journal", params={"from": "2026-11-03"}, headers=bearer(tok["ops:ana"]))
    assert [e["journal_id"] for e in one_day.json()["entries"]] == ["J-d", "J-c"]


@pytest.mark.parametrize(("params", "field"), [
    ({}, "from"),
    ({"from": "2026-11-2"}, "from"),
    ({"from": "2026-02-30"}, "from"),
    ({"from": "2026-11-03", "to": "2026-11-02"}, "to"),
    ({"from": "2026-11-02", "limit": 0}, "limit"),
    ({"from": "2026-11-02", "limit": 501}, "limit"),
    ({"from": "2026-11-02", "cursor": "garbage"}, "cursor"),
])
def test_bad_list_parameters_are_422_naming_them(sqlite_api, params, field):
    client, _, tok = sqlite_api
    resp = client.get("/finance/journal", params=params, headers=bearer(tok["ops:ana"]))
    assert resp.status_code == 422
    assert fields_of(resp) == [field]


@pytest.mark.parametrize("cursor", [
    # Well-formed cursors whose values no keyset query could bind: ts 10**22, id "\u0000".
    "eyJmIjoiMjAyNi0xMS0wMiIsInQiOiIyMDI2LTExLTAyIiwidHMiOjEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwLCJpZCI6IkoifQ",
    "eyJmIjoiMjAyNi0xMS0wMiIsInQiOiIyMDI2LTExLTAyIiwidHMiOjEsImlkIjoiXHUwMDAwIn0",
])
def test_forged_cursors_are_422_not_a_database_error(api, cursor):
    client, _, tok = api
    resp = client.get("/finance/journal", params={"from": DAY, "cursor": cursor}, headers=bearer(tok["ops:ana"]))
    assert (resp.status_code, fields_of(resp)) == (422, ["cursor"])


def test_a_cursor_only_continues_the_query_it_came_from(sqlite_api):
    client, _, tok = sqlite_api
    for i in range(3):
        post(client, tok["system:import"], svc(f"J-{i}"))
    first = client.get("/finance/journal", params={"from": DAY, "limit": 1}, headers=bearer(tok["ops:ana"])).json()
    resp = client.get("/finance/journal", params={"from": DAY, "to": "2026-11-05", "cursor": first["next_cursor"]},
                      headers=bearer(tok["ops:ana"]))
    assert resp.status_code == 422
    assert "keep from and to unchanged" in resp.json()["errors"][0]["message"]


def test_get_proof_returns_the_registry_record(api):
    client, engine, tok = api
    record = registry.register(engine, proof_id="proof-2026-11-02", day=DAY, merkle_root="a" * 64,
                               statement_sha256="b" * 64, location="s3://bucket/2026-11-02/",
                               fmt="finance-proof/1", actor="system:test")
    resp = client.get("/finance/proofs/proof-2026-11-02", headers=bearer(tok["aud:alex"]))
    assert resp.status_code == 200
    assert resp.json() == {"proof_id": "proof-2026-11-02", "day": DAY, "merkle_root": "a" * 64,
                           "statement_sha256": "b" * 64, "location": "s3://bucket/2026-11-02/",
                           "published_at": resp.json()["published_at"],
                           "published_at_us": record.published_at_us, "format": "finance-proof/1"}
    missing = client.get("/finance/proofs/proof-1999-01-01", headers=bearer(tok["aud:alex"]))
    assert (missing.status_code, fields_of(missing)) == (404, ["proof_id"])
    assert client.get("/finance/proofs/proof-2026-11-02").status_code == 401


def test_the_openapi_document_is_served_and_documents_the_inputs(sqlite_api):
    client, _, _ = sqlite_api
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/finance/journal", "/finance/journal/{journal_id}/review",
                                 "/finance/journal/reviews", "/finance/proofs/{proof_id}", "/payout/{payout_id}",
                                 "/payout/{payout_id}/approvals", "/payout/{payout_id}/settle"}
    post_op = doc["paths"]["/finance/journal"]["post"]
    assert post_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JournalEntryInput"}
    entry_schema = doc["components"]["schemas"]["JournalEntryInput"]
    assert entry_schema["additionalProperties"] is False
    assert set(entry_schema["required"]) == {"journal_id", "ts", "kind", "memo", "lines"}
    assert {"202", "201", "200", "401", "403", "409", "413", "422"} <= set(post_op["responses"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
