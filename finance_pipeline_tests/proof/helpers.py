"""Shared builders for the proof tests: throwaway P-256 keys, a keyring, sample packages."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.journal import JournalEntry, parse_entry
from finance_pipeline.proof.keyring import Keyring
from finance_pipeline.proof.package import Package, signature_entry
from finance_pipeline_tests.proof.reference_builder import Draft, prepare


DAY = "2026-11-02"

CLASSES = ("AMOUNT_MISMATCH", "CURRENCY_MISMATCH", "DUPLICATE_LEDGER", "DUPLICATE_PROVIDER",
           "FEE_MISMATCH", "LEDGER_MISSING", "PROVIDER_MISSING", "STATUS_MISMATCH", "TIMING_WINDOW")

@dataclass(frozen=True)
class Signer:
    key_id: str
    role: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign(self, data: bytes) -> dict:
        der = self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        return signature_entry(key_id=self.key_id, role=self.role, der_signature=der)

def _signer(key_id: str, role: str, seed: int) -> Signer:
    # deterministic keys keep failures reproducible; they protect nothing
    return Signer(key_id, role, ec.derive_private_key(seed, ec.SECP256R1()))

@lru_cache(maxsize=None)
def signers() -> tuple[Signer, Signer, Signer]:
    """Two trusted signers with distinct roles, and an outsider not in the keyring."""
    return (_signer("local:finance-lead-1", "finance-lead", 0xF1A),
            _signer("local:controller-1", "controller", 0xC0F),
            _signer("local:outsider", "finance-lead", 0xBAD))

def keyring(*, min_signatures: int = 2, distinct_roles: bool = True) -> Keyring:
    lead, controller, _ = signers()
    return Keyring.load({
        "keys": [{"key_id": s.key_id, "role": s.role, "public_key_pem": s.public_key_pem}
                 for s in (lead, controller)],
        "quorum": {"min_signatures": min_signatures, "distinct_roles": distinct_roles},
    })

def entry(journal_id: str, ts: str, amount: int = 1250, currency: str = "USD", memo: str = "sale",
          **extra) -> JournalEntry:
    return parse_entry({
        "journal_id": journal_id, "ts": ts, "kind": "standard", "memo": memo,
        "posted_by": "alice", "provider": extra.pop("provider", None),
        "provider_reference": extra.pop("provider_reference", None),
        "lines": [
            {"account_id": "cash", "direction": "debit", "amount_minor": amount, "currency": currency},
            {"account_id": "revenue", "direction": "credit", "amount_minor": amount, "currency": currency},
        ],
        **extra,
    })

def sample_entries(day: str = DAY) -> list[JournalEntry]:
    return [
        entry("j-003", f"{day}T10:15:00Z", 5000, provider="stripe", provider_reference="txn_2"),
        entry("j-001", f"{day}T00:00:00Z", 1250, provider="stripe", provider_reference="txn_1"),
        entry("j-002", f"{day}T10:15:00Z", 700, currency="EUR", memo='quote " and \\ and é'),
        entry("j-010", f"{day}T23:59:59.999999Z", 99),
        entry("j-004", f"{day}T12:00:00.5Z", 300000, currency="JPY"),
    ]

def sample_records() -> list[dict]:
    return [
        {"provider": "stripe", "id": "txn_2", "amount": 5000, "fee": 175, "net": 4825, "currency": "usd"},
        {"provider": "payout_sandbox", "id": "po_1", "payout_id": "po_1", "amount_minor": 10, "status": "settled"},
        {"provider": "stripe", "id": "txn_1", "amount": 1250, "fee": 66, "net": 1184, "currency": "usd"},
    ]

def sample_report(day: str = DAY, matched: int = 2, discrepancies: dict | None = None) -> bytes:
    from datetime import date, timedelta

    counts = {c: 0 for c in CLASSES}
    counts.update(discrepancies or {})
    rows = [{"class": cls, "provider": None, "provider_id": None, "journal_id": f"j-x{i}",
             "currency": None, "provider_amount_minor": None, "ledger_amount_minor": None,
             "detail": "fix it"} for cls in sorted(counts) for i in range(counts[cls])]
    nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    return canonical_bytes({
        "format": "finance-reconciliation/1",
        "interval": {"from": f"{day}T00:00:00Z", "to": f"{nxt}T00:00:00Z"},
        "summary": {"ledger_entries": 5, "provider_records": {"stripe": 2, "payout_sandbox": 1},
                    "matched": matched, "discrepancies": counts},
        "discrepancies": rows,
    })

def draft(day: str = DAY, *, entries=None, records=None, report: bytes | None = None,
          previous: dict | None = None, extra: dict | None = None) -> Draft:
    return prepare(day=day,
                   entries=sample_entries(day) if entries is None else entries,
                   provider_records=sample_records() if records is None else records,
                   report_bytes=sample_report(day) if report is None else report,
                   previous=previous, extra=extra)

def sign_all(d: Draft, *who: Signer) -> Package:
    chosen = who or signers()[:2]
    return d.package([s.sign(d.signed_bytes) for s in chosen])

def build(day: str = DAY, **kwargs) -> Package:
    return sign_all(draft(day, **kwargs))
