"""Two-person review of manual postings, in the ledger: submit, approve or reject, expiry."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from finance_pipeline.domain.journal import JournalValidationError
from finance_pipeline.ledger import reviews
from finance_pipeline.ledger.audit import list_events
from finance_pipeline.ledger.errors import ClosedDayError, JournalConflictError, UnknownAccountError
from finance_pipeline.ledger.schema import journal_entries
from finance_pipeline_tests.ledger.helpers import entry, line, row_counts

T0 = 1_795_000_000_000_000  # a clock for the tests (2026-11-18)
LEAD = frozenset({"finance-lead"})


def _manual(journal_id: str = "M-1", **overrides) -> dict:
    body = entry(journal_id, kind="adjustment", **overrides)
    body.pop("posted_by")
    body.pop("reviewed_by")
    return body


def _posted(engine, journal_id: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(journal_entries).where(journal_entries.c.journal_id == journal_id)).first()


def test_an_entry_is_posted_only_when_a_second_person_approves_it(ledger):
    sub, created = reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0)
    assert created and sub.status == "pending" and sub.entry["posted_by"] == "ops:ana"
    assert sub.entry["reviewed_by"] is None
    assert _posted(ledger, "M-1") is None  # not in the ledger, not in any extract
    assert [s.journal_id for s in reviews.pending(ledger, T0 + 1)] == ["M-1"]
    assert [s.journal_id for s in reviews.pending(ledger, T0 + 1, day="2026-11-02")] == ["M-1"]
    assert reviews.pending(ledger, T0 + 1, day="2026-11-03") == []
    # The same body again is a no-op.
    assert reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0 + 5)[1] is False

    done = reviews.review(ledger, "M-1", reviewer="lead:rita", reviewer_roles=LEAD, approve=True, now_us=T0 + 10)
    assert done.status == "posted"
    row = _posted(ledger, "M-1")
    assert (row.posted_by, row.reviewed_by) == ("ops:ana", "lead:rita")
    assert reviews.pending(ledger, T0 + 11) == []
    actions = [e.action for e in list_events(ledger) if e.subject_id == "M-1"]
    assert actions == ["journal.submit", "journal.post", "journal.approve"]


def test_the_body_cannot_name_the_people(ledger):
    with pytest.raises(JournalValidationError) as exc:
        reviews.submit(ledger, {**_manual(), "posted_by": "lead:rita", "reviewed_by": "lead:bob"},
                       submitter="ops:ana", now_us=T0)
    assert sorted(e.field for e in exc.value.errors) == ["posted_by", "reviewed_by"]
    assert reviews.pending(ledger, T0) == []


@pytest.mark.parametrize("reviewer, roles, fragment", [
    ("ops:ana", LEAD, "cannot review it"),
    ("ops:bob", frozenset({"operator"}), "reviewing needs one of the roles"),
])
def test_no_self_review_and_reviewers_need_the_role(ledger, reviewer, roles, fragment):
    reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0)
    before = row_counts(ledger)
    with pytest.raises(reviews.ReviewForbiddenError, match=fragment):
        reviews.review(ledger, "M-1", reviewer=reviewer, reviewer_roles=roles, approve=True, now_us=T0 + 1)
    assert row_counts(ledger) == before and _posted(ledger, "M-1") is None


def test_a_submission_expires_and_may_then_be_submitted_again(ledger):
    reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0, ttl_s=60)
    with pytest.raises(reviews.ReviewError, match="expired at .* without a review"):
        reviews.review(ledger, "M-1", reviewer="lead:rita", reviewer_roles=LEAD, approve=True,
                       now_us=T0 + 61_000_000)
    assert reviews.pending(ledger, T0 + 61_000_000) == []
    again, created = reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0 + 62_000_000)
    assert created and again.status == "pending"
    reviews.review(ledger, "M-1", reviewer="lead:rita", reviewer_roles=LEAD, approve=True, now_us=T0 + 63_000_000)
    assert _posted(ledger, "M-1") is not None


def test_a_rejected_submission_is_not_posted_and_cannot_be_approved_later(ledger):
    reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0)
    rejected = reviews.review(ledger, "M-1", reviewer="lead:rita", reviewer_roles=LEAD, approve=False,
                              now_us=T0 + 1, comment="wrong account")
    assert rejected.status == "rejected" and rejected.comment == "wrong account"
    with pytest.raises(reviews.ReviewError, match="already rejected by lead:rita"):
        reviews.review(ledger, "M-1", reviewer="lead:bob", reviewer_roles=LEAD, approve=True, now_us=T0 + 2)
    assert _posted(ledger, "M-1") is None
    with pytest.raises(reviews.ReviewNotFoundError):
        reviews.review(ledger, "nope", reviewer="lead:bob", reviewer_roles=LEAD, approve=True, now_us=T0)


def test_a_submission_is_checked_as_a_posting_would_be(ledger):
    with pytest.raises(UnknownAccountError):
        reviews.submit(ledger, _manual(lines=[line("nope", "debit", 5), line("cash", "credit", 5)]),
                       submitter="ops:ana", now_us=T0)
    with pytest.raises(JournalValidationError, match="debits"):
        reviews.submit(ledger, _manual(lines=[line("cash", "debit", 5), line("revenue", "credit", 4)]),
                       submitter="ops:ana", now_us=T0)
    reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0)
    with pytest.raises(JournalConflictError, match="awaits review with another body"):
        reviews.submit(ledger, _manual(memo="other"), submitter="ops:bob", now_us=T0)
    assert len(reviews.pending(ledger, T0)) == 1


def test_a_day_closed_while_the_entry_waited_refuses_the_approval(ledger):
    from finance_pipeline.ledger.schema import proofs

    reviews.submit(ledger, _manual(), submitter="ops:ana", now_us=T0)
    with ledger.begin() as conn:
        conn.execute(proofs.insert().values(proof_id="p-1", day="2026-11-02", merkle_root="0" * 64,
                                            statement_sha256="0" * 64, location="x", published_at_us=0,
                                            format="finance-proof/1"))
    with pytest.raises(ClosedDayError, match="closed by proof 'p-1'"):
        reviews.review(ledger, "M-1", reviewer="lead:rita", reviewer_roles=LEAD, approve=True, now_us=T0 + 1)
    assert _posted(ledger, "M-1") is None
    assert reviews.get(ledger, "M-1").status == "pending"  # nothing changed
