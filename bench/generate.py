"""A synthetic day of N journal entries, loaded straight into PostgreSQL with COPY.

The mix follows `finance_pipeline.demo.scenario` at scale: Stripe charges with fees (3 lines),
creator-share accruals, refunds booked as reversals of an earlier charge, Stripe payouts to the
bank, creator payouts through the payout provider, and a few reviewed two-currency
adjustments (4 lines). Entries fill the UTC day plus the reconciliation's one-hour margin on
both sides (as the neighbouring days would), about 2.8 lines per entry.

The rows are valid per `finance-journal/1` (balanced per currency, ISO 4217 currencies, ids
of at most 64 characters, reversals name an existing entry, adjustments are reviewed by
someone else), and ``body_sha256`` is the SHA-256 of each entry's canonical leaf. Memos include
non-ASCII text, quotes, backslashes, tabs and newlines so the canonical encoders are exercised.

The providers' side is written as the two sandboxes' data files; 0.1 % of the day's entries
carry an injected discrepancy, spread evenly over the nine classes. The generator also writes
``expected_ledger_entries.jsonl`` (computed independently with ``json.dumps``) so the benchmark
can check that the pipeline's proof file is byte-identical, and ``manifest.json`` with counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from finance_pipeline.demo.scenario import ACCOUNT_ROLES, DISCREPANCY_CLASSES, account_id
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us

US = 1_000_000
HOUR = 3600 * US
CURRENCIES = ("USD", "EUR", "GBP", "JPY")
CURRENCY_P = (0.50, 0.25, 0.15, 0.10)
_PRICE = {"USD": (500, 25_000), "EUR": (500, 20_000), "GBP": (500, 20_000), "JPY": (500, 30_000)}
_FEE = {"USD": (290, 30), "EUR": (250, 25), "GBP": (250, 20), "JPY": (360, 0)}  # (bp x 10, fixed)
# Entry types and their share of entries.
CHARGE, ACCRUAL, REFUND, CREATOR_PAYOUT, ADJUSTMENT, STRIPE_PAYOUT = range(6)
MIX = (0.78, 0.08, 0.06, 0.075, 0.004, 0.001)
DISCREPANCY_RATE = 0.001
BATCH_SIZE = 10_000
# A day built in parts (`make bench-large`): each part's token sequences start this far apart.
TOKEN_STRIDE = 100_000_000
MAX_PARTS = 100
POSTED_BY = "system:import"
NOW_US = 1_790_000_000 * US  # when the bench's accounts and batches were created
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def _tokens(rng: np.random.Generator, n: int, width: int = 16, start: int = 0) -> list[str]:
    """``n`` distinct base62 tokens: random characters, then a base62 sequence number from
    ``start`` (parts of a day take disjoint sequences)."""
    tail = 6
    digits = np.empty((n, tail), dtype=np.int64)
    seq = np.arange(start, start + n, dtype=np.int64)
    for k in range(tail - 1, -1, -1):
        digits[:, k] = seq % 62
        seq //= 62
    head = rng.integers(0, 62, size=(n, width - tail))
    chars = _ALPHABET[np.concatenate([head, digits], axis=1)]
    return np.ascontiguousarray(chars).view(f"S{width}").ravel().astype(str).tolist()


def _fee(cur: str, gross: int) -> int:
    bp, fixed = _FEE[cur]
    return (gross * bp + 5_000) // 10_000 + fixed


def _memo(base: str, k: int, token: str) -> str:
    """Mostly plain ASCII; some non-ASCII, quotes and backslashes, a few control characters."""
    if k % 100 == 7:
        return f"{base} — café «spécial» n° {token[-4:]} ✓ 🎉"
    if k % 1000 == 13:
        return f'{base} "quoted" C:\\orders\\{token[-4:]}'
    if k % 10_000 == 17:
        return f"{base}\nsecond line\tand a tab\u0001"
    return base


def leaf_text(e: dict) -> str:
    """Canonical leaf via json.dumps (independent of the project's encoders): the members'
    names are ASCII, so sort_keys orders them as RFC 8785 does, and json.dumps escapes strings
    exactly as RFC 8785 requires when ensure_ascii is off."""
    return json.dumps(e, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass
class Dataset:
    day: str
    n: int
    entries: list[dict] = field(default_factory=list)  # spec shape, plus "_ts_us"
    stripe_txns: list[dict] = field(default_factory=list)
    stripe_payouts: list[dict] = field(default_factory=list)
    creator_payouts: list[dict] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    injected: dict[str, list[dict]] = field(default_factory=dict)


def build(n: int, day: str, seed: int = 7, *, part: int = 0, parts: int = 1) -> Dataset:
    """The day's entries and provider records (in memory); with ``parts`` > 1, part ``part`` of
    the day: ``n`` entries spread over the whole window like the others, its own random stream
    and id ranges, so parts are built one at a time and no id repeats between them."""
    if not 0 <= part < parts or parts > MAX_PARTS:
        raise ValueError(f"part {part} of {parts}: parts must be 1 to {MAX_PARTS}, part 0 to parts - 1")
    rng = np.random.default_rng(seed if parts == 1 else [seed, part])
    lo, hi = day_bounds_us(day)
    side = max(1, round(n / 24))  # the neighbouring days' last and first hour
    total = n + 2 * side
    ts = np.concatenate([rng.integers(lo - HOUR, lo, side), rng.integers(lo, hi, n),
                         rng.integers(hi, hi + HOUR, side)]).astype(np.int64)
    whole = rng.random(total) < 0.5  # half of the entries on whole seconds
    ts[whole] -= ts[whole] % US
    typ = rng.choice(len(MIX), size=total, p=MIX)
    cur_idx = rng.choice(len(CURRENCIES), size=total, p=CURRENCY_P)
    u = rng.random(total)
    amount = np.empty(total, dtype=np.int64)
    for ci, cur in enumerate(CURRENCIES):
        a, b = _PRICE[cur]
        m = cur_idx == ci
        amount[m] = a + (u[m] * (b - a)).astype(np.int64)

    # Injected discrepancies: charges (and creator payouts) well inside the day.
    k = max(1, round(n * DISCREPANCY_RATE / len(DISCREPANCY_CLASSES)))
    inside = (ts >= lo + 2 * HOUR) & (ts < hi - 2 * HOUR)
    charge_classes = [c for c in DISCREPANCY_CLASSES if c != "STATUS_MISMATCH"]
    cand = np.flatnonzero((typ == CHARGE) & inside)
    picked = rng.choice(cand, size=k * len(charge_classes), replace=False)
    inject: dict[int, str] = {}
    for i, cls in enumerate(charge_classes):
        for idx in picked[i * k:(i + 1) * k].tolist():
            inject[idx] = cls
    cand_p = np.flatnonzero((typ == CREATOR_PAYOUT) & inside)
    for idx in rng.choice(cand_p, size=k, replace=False).tolist():
        inject[idx] = "STATUS_MISMATCH"
    hi_s = hi // US
    for idx, cls in inject.items():
        if cls == "TIMING_WINDOW":  # ledger before midnight, Stripe after, within the tolerance
            ts[idx] = (hi_s - int(rng.integers(10, 1500))) * US

    # Refunds reverse an earlier, untouched charge (the reversal's target must exist).
    ok = np.flatnonzero(typ == CHARGE)
    ok = ok[~np.isin(ok, np.fromiter(inject, dtype=np.int64))]
    ok = ok[np.argsort(ts[ok], kind="stable")]
    refunds = np.flatnonzero(typ == REFUND)
    pos = np.searchsorted(ts[ok], ts[refunds], side="left")
    early = pos == 0
    typ[refunds[early]] = ACCRUAL  # nothing to refund yet
    refunds, pos = refunds[~early], pos[~early]
    target = np.full(total, -1, dtype=np.int64)
    target[refunds] = ok[(rng.random(len(refunds)) * pos).astype(np.int64)]

    n_tok = total + 2 * k + 16
    if n_tok + k > TOKEN_STRIDE:
        raise ValueError(f"a part of {n:,} entries is too large; use more parts")
    at = part * TOKEN_STRIDE
    ch_tok, txn_tok, misc_tok = _tokens(rng, n_tok, start=at), _tokens(rng, n_tok + k, start=at), \
        _tokens(rng, n_tok, 12, start=at)
    # One part keeps the names a day always had; parts name their payouts and batches apart.
    tag = "" if parts == 1 else f"p{part:02d}_"
    txn_iter = iter(txn_tok)
    ds = Dataset(day=day, n=n, injected={c: [] for c in DISCREPANCY_CLASSES})
    ymd = day.replace("-", "")
    ts_l, typ_l, cur_l, amt_l, tgt_l = ts.tolist(), typ.tolist(), cur_idx.tolist(), amount.tolist(), target.tolist()
    jid_of: list[str | None] = [None] * total
    gross_of: list[int] = [0] * total
    payout_seq = 0
    entries = ds.entries

    def entry(jid, t, kind, memo, lines, provider=None, ref=None, reverses=None, reviewed_by=None,
              posted_by=POSTED_BY):
        e = {"journal_id": jid, "ts": None, "kind": kind, "memo": memo,
             "batch_id": None, "provider": provider, "provider_reference": ref, "reverses": reverses,
             "posted_by": posted_by, "reviewed_by": reviewed_by,
             "lines": [{"account_id": account_id(role, c), "direction": d, "amount_minor": a, "currency": c}
                       for role, d, a, c in lines],
             "_ts_us": t}
        entries.append(e)
        return e

    def txn(created, amt, fee, cur, category, source, description, exchange_rate=None):
        lc = cur.lower()
        return {
            "id": "txn_" + next(txn_iter), "object": "balance_transaction", "amount": amt,
            "available_on": created + 2 * 86400, "balance_type": "payments", "created": created, "currency": lc,
            "description": description, "exchange_rate": exchange_rate, "fee": fee,
            "fee_details": ([{"amount": fee, "application": None, "currency": lc,
                              "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else []),
            "net": amt - fee, "reporting_category": category, "source": source, "status": "available",
            "type": category,
        }

    # Charges first, so refunds can name their targets' journal ids.
    order = sorted(range(total), key=lambda i: (typ_l[i] != CHARGE, i))
    for i in order:
        t, ty, cur, amt = ts_l[i], typ_l[i], CURRENCIES[cur_l[i]], amt_l[i]
        tok = ch_tok[i]
        cls = inject.get(i)
        if ty == CHARGE:
            ch = "ch_" + tok
            jid = f"je-{ch}"
            gross, fee = amt, _fee(cur, amt)
            jid_of[i], gross_of[i] = jid, gross
            created = t // US
            rate = 1.0834 if (cur == "EUR" and i % 50 == 3) else None
            rec = txn(created, gross, fee, cur, "charge", ch, f"Order {ch[-6:]}", rate)
            l_cur, l_gross, l_fee = cur, gross, fee
            if cls == "AMOUNT_MISMATCH":
                l_gross = gross + 100
            elif cls == "FEE_MISMATCH":
                l_fee = fee - 7
            elif cls == "CURRENCY_MISMATCH":
                l_cur = "EUR" if cur != "EUR" else "USD"
            elif cls == "TIMING_WINDOW":
                rec = txn(hi_s + int(rng.integers(10, 1500)), gross, fee, cur, "charge", ch, f"Order {ch[-6:]}")
            lines = [("stripe_clearing", "debit", l_gross - l_fee, l_cur), ("stripe_fees", "debit", l_fee, l_cur),
                     ("revenue", "credit", l_gross, l_cur)]
            memo = _memo(f"Charge {ch}", i, tok)
            if cls != "LEDGER_MISSING":
                entry(jid, t, "standard", memo, lines, "stripe", ch)
            if cls == "DUPLICATE_LEDGER":
                entry(f"{jid}-dup", t + 60 * US, "standard", memo, lines, "stripe", ch)
            if cls != "PROVIDER_MISSING":
                ds.stripe_txns.append(rec)
            if cls == "DUPLICATE_PROVIDER":
                ds.stripe_txns.append(txn(created + 5, gross, fee, cur, "charge", ch, f"Order {ch[-6:]}"))
            if cls:
                ds.injected[cls].append({"journal_id": jid, "source": ch, "txn": rec["id"]})
        elif ty == ACCRUAL:
            share = max(1, amt * 7 // 10)
            entry(f"je-accrual-{misc_tok[i]}", t, "standard", _memo(f"Creator share {misc_tok[i]}", i, tok),
                  [("creator_costs", "debit", share, cur), ("creator_payable", "credit", share, cur)])
        elif ty == REFUND:
            j = tgt_l[i]
            cur = CURRENCIES[cur_l[j]]
            refund = max(1, gross_of[j] // 2)
            re = "re_" + tok
            entry(f"je-{re}", t, "reversal", _memo(f"Refund {re} of {jid_of[j][3:]}", i, tok),
                  [("refunds", "debit", refund, cur), ("stripe_clearing", "credit", refund, cur)],
                  "stripe", re, reverses=jid_of[j])
            ds.stripe_txns.append(txn(t // US, -refund, 0, cur, "refund", re, f"Refund of {jid_of[j][3:]}"))
        elif ty == CREATOR_PAYOUT:
            payout_seq += 1
            pid = f"pay_{ymd}_{tag}{payout_seq:07d}"
            value = amt * 3
            settled = format_ts_us(t)
            created = format_ts_us(t - int(rng.integers(600, 3600)) * US)
            entry(f"je-{pid}", t, "standard", _memo(f"Creator payout {pid} settled", i, tok),
                  [("creator_payable", "debit", value, cur), ("payout_clearing", "credit", value, cur)],
                  "payout_sandbox", pid)
            stuck = cls == "STATUS_MISMATCH"
            ds.creator_payouts.append({
                "payout_id": pid, "amount_minor": value, "currency": cur,
                "destination": f"creator_{i % 9973:04d}", "metadata": {},
                "status": "pending" if stuck else "settled", "created_at": created,
                "settled_at": None if stuck else settled,
            })
            if stuck:
                ds.stuck.append(pid)
                ds.injected[cls].append({"journal_id": f"je-{pid}", "payout_id": pid})
        elif ty == ADJUSTMENT:
            other = "EUR" if cur != "EUR" else "USD"
            a2 = max(1, amt // 3)
            entry(f"je-adj-{misc_tok[i]}", t, "adjustment", _memo(f"Reclass creator costs {misc_tok[i]}", i, tok),
                  [("creator_costs", "debit", amt, cur), ("creator_payable", "credit", amt, cur),
                   ("creator_costs", "debit", a2, other), ("creator_payable", "credit", a2, other)],
                  posted_by="ops:oscar", reviewed_by="ops:rita")
        else:  # STRIPE_PAYOUT
            po = "po_" + tok
            net = 100_000 + amt * 200
            created = t // US
            rec = txn(created, -net, 0, cur, "payout", po, "STRIPE PAYOUT")
            ds.stripe_txns.append(rec)
            ds.stripe_payouts.append({
                "id": po, "object": "payout", "amount": net, "arrival_date": created + 86400,
                "created": created, "currency": cur.lower(), "status": "paid", "balance_transaction": rec["id"],
                "method": "standard", "type": "bank_account", "destination": f"ba_{cur.lower()}_operating",
                "description": "STRIPE PAYOUT",
            })
            entry(f"je-{po}", t, "standard", _memo(f"Stripe payout {po} to bank", i, tok),
                  [("bank", "debit", net, cur), ("stripe_clearing", "credit", net, cur)], "stripe", po)

    # Batches of BATCH_SIZE entries in time order; timestamps in the spec's form.
    entries.sort(key=lambda e: (e["_ts_us"], e["journal_id"]))
    for b, e in enumerate(entries):
        e["batch_id"] = f"bench-{day}-{tag.replace('_', '-')}{b // BATCH_SIZE:04d}"
        e["ts"] = format_ts_us(e["_ts_us"])
    ds.stripe_txns.sort(key=lambda r: r["id"])
    return ds


def accounts_rows() -> list[dict]:
    return [{"account_id": account_id(role, cur), "name": f"{name} ({cur})", "type": typ, "currency": cur,
             "role": None if role == "creator_costs" else role}
            for cur in CURRENCIES for role, typ, name in ACCOUNT_ROLES]


def _copy(raw, table: str, columns: list[str], data: dict[str, list]) -> None:
    buf = io.BytesIO()
    pa_csv.write_csv(pa.table(data), buf, pa_csv.WriteOptions(include_header=False))
    view = buf.getbuffer()
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as cp:
        for off in range(0, len(view), 8 << 20):
            cp.write(view[off:off + (8 << 20)])
    del view


def prepare_database(engine: sa.Engine) -> None:
    """Migrate the (empty) database and COPY the chart of accounts."""
    from finance_pipeline.ledger.migrate import upgrade

    upgrade(engine)
    accts = accounts_rows()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.transaction():
            _copy(raw, "accounts", ["account_id", "name", "type", "currency", "role", "created_at_us"], {
                "account_id": [a["account_id"] for a in accts], "name": [a["name"] for a in accts],
                "type": [a["type"] for a in accts], "currency": [a["currency"] for a in accts],
                "role": [a["role"] for a in accts], "created_at_us": [NOW_US] * len(accts)})
        raw.commit()


def load_entries(engine: sa.Engine, ds: Dataset, leaves: list[str]) -> dict[str, float]:
    """COPY the dataset's batches, entries and lines (FK triggers off while copying: the rows
    are valid by construction and the checks would triple the load time)."""
    t0 = time.perf_counter()
    batches: dict[str, int] = {}
    for e in ds.entries:
        batches[e["batch_id"]] = batches.get(e["batch_id"], 0) + 1
    E = ds.entries
    ent = {
        "journal_id": [e["journal_id"] for e in E], "ts_us": [e["_ts_us"] for e in E],
        "kind": [e["kind"] for e in E], "memo": [e["memo"] for e in E], "batch_id": [e["batch_id"] for e in E],
        "provider": [e["provider"] for e in E], "provider_reference": [e["provider_reference"] for e in E],
        "reverses": [e["reverses"] for e in E], "posted_by": [e["posted_by"] for e in E],
        "reviewed_by": [e["reviewed_by"] for e in E],
        "body_sha256": [hashlib.sha256(leaf.encode()).hexdigest() for leaf in leaves],
        "posted_at_us": [e["_ts_us"] + 250_000 for e in E],
    }
    lines: dict[str, list] = {c: [] for c in ("journal_id", "line_no", "account_id", "direction",
                                              "amount_minor", "currency")}
    for e in E:
        for no, ln in enumerate(e["lines"]):
            lines["journal_id"].append(e["journal_id"])
            lines["line_no"].append(no)
            lines["account_id"].append(ln["account_id"])
            lines["direction"].append(ln["direction"])
            lines["amount_minor"].append(ln["amount_minor"])
            lines["currency"].append(ln["currency"])
    t1 = time.perf_counter()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.transaction():
            raw.execute("SET LOCAL session_replication_role = replica")
            _copy(raw, "journal_batches", ["batch_id", "expected_entries", "staged_payload", "status",
                                           "created_at_us", "applied_at_us", "source"], {
                "batch_id": list(batches), "expected_entries": list(batches.values()),
                "staged_payload": ["[]"] * len(batches), "status": ["applied"] * len(batches),
                "created_at_us": [NOW_US] * len(batches), "applied_at_us": [NOW_US] * len(batches),
                "source": ["bench generator"] * len(batches)})
            _copy(raw, "journal_entries", list(ent), ent)
            _copy(raw, "journal_lines", list(lines), lines)
        raw.commit()
    return {"prepare_s": t1 - t0, "copy_s": time.perf_counter() - t1, "lines": len(lines["journal_id"])}


def analyze(engine: sa.Engine) -> None:
    """Planner statistics, as a live database has them (ANALYZE outside a transaction that
    would roll it back when the connection closes)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.commit()
        raw.autocommit = True
        try:
            raw.execute("ANALYZE")
        finally:
            raw.autocommit = False


def _in_day(ds: Dataset, leaves: list[str]) -> list[tuple[dict, str]]:
    lo, hi = day_bounds_us(ds.day)
    return [(e, leaf) for e, leaf in zip(ds.entries, leaves) if lo <= e["_ts_us"] < hi]


def write_part_files(ds: Dataset, leaves: list[str], out: Path, suffix: str = "") -> dict:
    """The part's sandbox data files (``stripe<suffix>.json``, ``payouts<suffix>.json``) and
    its counts."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"stripe{suffix}.json", "w", encoding="utf-8") as f:
        json.dump({"balance_transactions": ds.stripe_txns, "payouts": ds.stripe_payouts}, f,
                  ensure_ascii=False, separators=(",", ":"))
    with open(out / f"payouts{suffix}.json", "w", encoding="utf-8") as f:
        json.dump({"payouts": ds.creator_payouts, "stuck_payout_ids": sorted(ds.stuck)}, f,
                  ensure_ascii=False, separators=(",", ":"))
    in_day = _in_day(ds, leaves)
    return {
        "day": ds.day, "n": ds.n, "entries_in_day": len(in_day),
        "lines_in_day": sum(len(e["lines"]) for e, _ in in_day),
        "entries_total": len(ds.entries), "lines_total": sum(len(e["lines"]) for e in ds.entries),
        "stripe_balance_transactions": len(ds.stripe_txns), "stripe_payouts": len(ds.stripe_payouts),
        "creator_payouts": len(ds.creator_payouts),
        "expected_discrepancies": {c: len(v) for c, v in ds.injected.items()},
    }


def write_files(ds: Dataset, leaves: list[str], out: Path) -> dict:
    """Sandbox data files, the expected proof ledger file and the manifest."""
    manifest = write_part_files(ds, leaves, out)
    with open(out / "expected_ledger_entries.jsonl", "wb") as f:
        f.write("".join(leaf + "\n" for _, leaf in _in_day(ds, leaves)).encode("utf-8"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def part_files(out: Path, name: str) -> list[Path]:
    """A data file of the day (``stripe.json``, ``payouts.json``), or its parts in order."""
    whole = out / name
    if whole.exists():
        return [whole]
    stem, ext = name.rsplit(".", 1)
    return sorted(out.glob(f"{stem}.part-*.{ext}"))


def _merge_expected(keyed: list[Path], out: Path) -> None:
    """The parts' in-day leaves, each part sorted, merged into the file's (ts, journal id) order.
    A key line is ``<ts_us, 20 digits>\t<journal id>\t<leaf>``: a leaf has no raw tab or
    newline (JSON escapes them) and a tab sorts before every character of an id."""
    import heapq

    files = [open(p, encoding="utf-8") for p in keyed]  # noqa: SIM115
    try:
        with open(out, "w", encoding="utf-8", newline="\n") as f:
            for line in heapq.merge(*files):
                f.write(line.split("\t", 2)[2])
    finally:
        for h in files:
            h.close()
    for p in keyed:
        p.unlink()


def generate(database_url: str, n: int, out: Path, day: str, seed: int = 7, parts: int = 1) -> dict:
    """Build the day, COPY it into ``database_url`` (an empty database) and write the files.
    With ``parts`` > 1 the day is built, loaded and written a part at a time (memory of one
    part), its data files as ``stripe.part-NN.json`` and ``payouts.part-NN.json``."""
    from finance_pipeline.ledger.engine import create_ledger_engine

    t0 = time.perf_counter()
    engine = create_ledger_engine(database_url)
    timings = {"build_s": 0.0, "load_s": 0.0, "files_s": 0.0, "prepare_s": 0.0, "copy_s": 0.0}
    manifest: dict = {}
    keyed: list[Path] = []
    try:
        prepare_database(engine)
        for k in range(parts):
            t1 = time.perf_counter()
            size = n // parts + (1 if k < n % parts else 0)
            ds = build(size, day, seed, part=k, parts=parts)
            leaves = [leaf_text({key: v for key, v in e.items() if key != "_ts_us"}) for e in ds.entries]
            t2 = time.perf_counter()
            load = load_entries(engine, ds, leaves)
            t3 = time.perf_counter()
            if parts == 1:
                manifest = write_files(ds, leaves, out)
            else:
                counts = write_part_files(ds, leaves, out, f".part-{k:02d}")
                manifest = _add_counts(manifest, counts)
                keyed.append(out / f"expected.part-{k:02d}.keyed")
                with open(keyed[-1], "w", encoding="utf-8", newline="\n") as f:
                    f.writelines(f"{e['_ts_us']:020d}\t{e['journal_id']}\t{leaf}\n"
                                 for e, leaf in sorted(_in_day(ds, leaves),
                                                       key=lambda p: (p[0]["_ts_us"], p[0]["journal_id"])))
            del ds, leaves
            for key, v in (("build_s", t2 - t1), ("load_s", t3 - t2), ("files_s", time.perf_counter() - t3),
                           ("prepare_s", load["prepare_s"]), ("copy_s", load["copy_s"])):
                timings[key] += v
        t4 = time.perf_counter()
        analyze(engine)
        timings["load_s"] += time.perf_counter() - t4
    finally:
        engine.dispose()
    if keyed:
        t5 = time.perf_counter()
        _merge_expected(keyed, out / "expected_ledger_entries.jsonl")
        timings["files_s"] += time.perf_counter() - t5
        manifest["n"] = n
        manifest["parts"] = parts
    manifest["generate_timings"] = {**timings, "lines": manifest["lines_total"], "total_s": time.perf_counter() - t0}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _add_counts(total: dict, part: dict) -> dict:
    """The manifest of a day so far plus one part's counts."""
    if not total:
        return part
    out = dict(total)
    for key, v in part.items():
        if key == "expected_discrepancies":
            out[key] = {c: total[key].get(c, 0) + k for c, k in v.items()}
        elif isinstance(v, int) and key != "n":
            out[key] = total[key] + v
    return out
