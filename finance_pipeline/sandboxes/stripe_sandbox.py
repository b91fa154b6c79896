"""A Stripe-compatible sandbox serving balance transactions and payouts from a JSON file.

It speaks enough of the Stripe v1 API for the official ``stripe`` SDK: Bearer (or HTTP basic)
key auth, list envelopes with cursor paging newest first, Stripe's error envelope and status
codes. Data file shape::

    {"balance_transactions": [{"id": "txn_...", "amount": 1000, "currency": "usd",
                               "created": 1767225600, "type": "charge", ...,
                               "_payout": "po_..."}],
     "payouts": [{"id": "po_...", "amount": 970, "currency": "usd", "created": ...,
                  "balance_transactions": ["txn_...", ...], ...}]}

A transaction belongs to a payout when listed in that payout's ``balance_transactions`` or when
it carries ``_payout``; neither member is served (real Stripe objects have no such field), they
only feed the ``payout`` list filter. A payout's own ``balance_transaction`` also matches that
filter, as on Stripe. Optional members get Stripe-like defaults (see ``normalise_*``).

Admin endpoints (no auth; a local test double): ``POST /_sandbox/objects`` with the data-file
shape adds objects and rewrites the file atomically, plus the shared ``/_sandbox/faults`` and
``/_sandbox/requests``.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from finance_pipeline.sandboxes.common import (
    Request,
    Response,
    SandboxApp,
    SandboxDataError,
    SandboxError,
    SandboxHandle,
    SandboxServer,
    is_int,
    read_json_file,
    write_json_atomic,
)

DEFAULT_API_KEY = "sk_test_sandbox"

PAYOUT_STATUSES = ("paid", "pending", "in_transit", "failed", "canceled")
# Members Stripe always returns, with the values its OpenAPI description allows.
BALANCE_TYPES = ("issuing", "payments", "refund_and_dispute_prefunding", "risk_reserved")
PAYOUT_RECONCILIATION_STATUSES = ("completed", "in_progress", "not_applicable")

# Stripe's reporting_category for common types; anything else reports its own type.
_REPORTING_CATEGORY = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "payout": "payout",
    "payout_cancel": "payout_reversal",
    "payout_failure": "payout_reversal",
    "stripe_fee": "fee",
    "stripe_fx_fee": "fee",
    "tax_fee": "fee",
    "adjustment": "adjustment",
}

_TXN_ROUTE = re.compile(r"^/v1/balance_transactions/([^/]+)$")
_PAYOUT_ROUTE = re.compile(r"^/v1/payouts/([^/]+)$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")


# --------------------------------------------------------------------------- normalisation


def _where(kind: str, index: int, obj: Any) -> str:
    oid = obj.get("id") if isinstance(obj, dict) else None
    return f"{kind}[{index}]" + (f" ({oid})" if isinstance(oid, str) else "")


def _need_int(obj: dict, key: str, where: str, default: Any = ...) -> int:
    if key not in obj:
        if default is ...:
            raise SandboxDataError(f"{where}: '{key}' is required (an integer)")
        return default
    value = obj[key]
    if not is_int(value):
        raise SandboxDataError(
            f"{where}: '{key}' must be an integer (money in minor units, times in unix seconds), got {value!r}"
        )
    return value


def _need_str(obj: dict, key: str, where: str, default: Any = ..., prefix: str = "") -> Any:
    if key not in obj:
        if default is ...:
            raise SandboxDataError(f"{where}: '{key}' is required (a string)")
        return default
    value = obj[key]
    if value is None and default is None:
        return None
    if not isinstance(value, str) or not value:
        raise SandboxDataError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    if prefix and not value.startswith(prefix):
        raise SandboxDataError(f"{where}: '{key}' must start with {prefix!r}, got {value!r}")
    return value


def _currency(obj: dict, where: str, key: str = "currency") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not _CURRENCY_RE.match(value):
        raise SandboxDataError(f"{where}: '{key}' must be a 3-letter ISO code such as 'usd', got {value!r}")
    # Stripe always sends currencies in lower case.
    return value.lower()


def _passthrough(obj: dict, known: set[str]) -> dict:
    # Extra Stripe fields in the data file are served as given; '_'-members are sandbox-only.
    return {k: v for k, v in obj.items() if k not in known and not k.startswith("_")}


def normalise_balance_transaction(raw: Any, where: str) -> tuple[dict, str | None]:
    """The served balance transaction and the payout it belongs to (from ``_payout``)."""
    if not isinstance(raw, dict):
        raise SandboxDataError(f"{where}: must be a JSON object, got {type(raw).__name__}")
    tid = _need_str(raw, "id", where, prefix="txn_")
    amount = _need_int(raw, "amount", where)
    created = _need_int(raw, "created", where)
    currency = _currency(raw, where)
    ttype = _need_str(raw, "type", where)
    fee = _need_int(raw, "fee", where, 0)
    net = _need_int(raw, "net", where, amount - fee)
    if net != amount - fee:
        raise SandboxDataError(
            f"{where}: 'net' must equal amount - fee ({amount} - {fee} = {amount - fee}), got {net}; "
            "fix the amounts or leave 'net' out to derive it"
        )
    if "fee_details" in raw:
        details = raw["fee_details"]
        if not isinstance(details, list):
            raise SandboxDataError(f"{where}: 'fee_details' must be a list")
        fee_details = []
        for i, d in enumerate(details):
            dw = f"{where}.fee_details[{i}]"
            if not isinstance(d, dict):
                raise SandboxDataError(f"{dw}: must be a JSON object")
            fee_details.append(
                {
                    **d,
                    "amount": _need_int(d, "amount", dw),
                    "application": d.get("application"),
                    "currency": _currency(d, dw) if "currency" in d else currency,
                    "description": d.get("description"),
                    "type": _need_str(d, "type", dw, "stripe_fee"),
                }
            )
        total = sum(d["amount"] for d in fee_details)
        if total != fee:
            raise SandboxDataError(f"{where}: fee_details amounts sum to {total} but 'fee' is {fee}")
    else:
        fee_details = (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        )
    payout = _need_str(raw, "_payout", where, None, prefix="po_")
    known = {
        "id", "object", "amount", "available_on", "balance_type", "created", "currency", "description",
        "exchange_rate", "fee", "fee_details", "net", "reporting_category", "source", "status", "type",
    }
    balance_type = _need_str(raw, "balance_type", where, "payments")
    if balance_type not in BALANCE_TYPES:
        raise SandboxDataError(f"{where}: 'balance_type' must be one of {', '.join(BALANCE_TYPES)}, "
                               f"got {balance_type!r}")
    served = {
        **_passthrough(raw, known),
        "id": tid,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": _need_int(raw, "available_on", where, created),
        "balance_type": balance_type,
        "created": created,
        "currency": currency,
        "description": raw.get("description"),
        "exchange_rate": raw.get("exchange_rate"),
        "fee": fee,
        "fee_details": fee_details,
        "net": net,
        "reporting_category": _need_str(raw, "reporting_category", where, _REPORTING_CATEGORY.get(ttype, ttype)),
        "source": _need_str(raw, "source", where, None),
        "status": _need_str(raw, "status", where, "available"),
        "type": ttype,
    }
    return served, payout


def normalise_payout(raw: Any, where: str) -> tuple[dict, list[str]]:
    """The served payout and the transaction ids its data-file ``balance_transactions`` lists."""
    if not isinstance(raw, dict):
        raise SandboxDataError(f"{where}: must be a JSON object, got {type(raw).__name__}")
    pid = _need_str(raw, "id", where, prefix="po_")
    created = _need_int(raw, "created", where)
    status = _need_str(raw, "status", where, "paid")
    if status not in PAYOUT_STATUSES:
        raise SandboxDataError(f"{where}: 'status' must be one of {', '.join(PAYOUT_STATUSES)}, got {status!r}")
    txns = raw.get("balance_transactions", [])
    if not isinstance(txns, list) or not all(isinstance(t, str) and t.startswith("txn_") for t in txns):
        raise SandboxDataError(f"{where}: 'balance_transactions' must be a list of 'txn_...' ids")
    known = {
        "id", "object", "amount", "arrival_date", "automatic", "balance_transaction", "created", "currency",
        "description", "destination", "failure_code", "failure_message", "livemode", "metadata", "method",
        "source_type", "statement_descriptor", "status", "type", "balance_transactions", "reconciliation_status",
    }
    # Stripe's own default: a paid payout's transactions are reconciled, others not yet.
    recon_status = _need_str(raw, "reconciliation_status", where, "completed" if status == "paid" else "not_applicable")
    if recon_status not in PAYOUT_RECONCILIATION_STATUSES:
        raise SandboxDataError(f"{where}: 'reconciliation_status' must be one of "
                               f"{', '.join(PAYOUT_RECONCILIATION_STATUSES)}, got {recon_status!r}")
    served = {
        **_passthrough(raw, known),
        "id": pid,
        "object": "payout",
        "amount": _need_int(raw, "amount", where),
        "arrival_date": _need_int(raw, "arrival_date", where, created),
        "automatic": raw.get("automatic", True),
        "balance_transaction": _need_str(raw, "balance_transaction", where, None, prefix="txn_"),
        "created": created,
        "currency": _currency(raw, where),
        "description": raw.get("description", "STRIPE PAYOUT"),
        "destination": raw.get("destination"),
        "failure_code": raw.get("failure_code"),
        "failure_message": raw.get("failure_message"),
        "livemode": False,
        "metadata": raw.get("metadata", {}),
        "method": _need_str(raw, "method", where, "standard"),
        "reconciliation_status": recon_status,
        "source_type": _need_str(raw, "source_type", where, "card"),
        "statement_descriptor": raw.get("statement_descriptor"),
        "status": status,
        "type": _need_str(raw, "type", where, "bank_account"),
    }
    return served, list(txns)


class _State:
    """Validated, indexed view of the raw data-file documents."""

    def __init__(self, raw_txns: list, raw_payouts: list) -> None:
        self.raw_txns = raw_txns
        self.raw_payouts = raw_payouts
        self.txns: dict[str, dict] = {}
        self.payouts: dict[str, dict] = {}
        self.payout_of: dict[str, str] = {}
        links: list[tuple[str, str, str]] = []
        for i, raw in enumerate(raw_txns):
            where = _where("balance_transactions", i, raw)
            served, payout = normalise_balance_transaction(raw, where)
            if served["id"] in self.txns:
                raise SandboxDataError(f"{where}: duplicate id {served['id']!r}")
            self.txns[served["id"]] = served
            if payout:
                links.append((served["id"], payout, where))
        for i, raw in enumerate(raw_payouts):
            where = _where("payouts", i, raw)
            served, txn_ids = normalise_payout(raw, where)
            if served["id"] in self.payouts:
                raise SandboxDataError(f"{where}: duplicate id {served['id']!r}")
            self.payouts[served["id"]] = served
            links.extend((t, served["id"], where) for t in txn_ids)
            if served["balance_transaction"]:
                links.append((served["balance_transaction"], served["id"], where))
        for txn_id, payout_id, where in links:
            if txn_id not in self.txns:
                raise SandboxDataError(f"{where}: links unknown balance transaction {txn_id!r}")
            if payout_id not in self.payouts:
                raise SandboxDataError(f"{where}: links unknown payout {payout_id!r}")
            other = self.payout_of.setdefault(txn_id, payout_id)
            if other != payout_id:
                raise SandboxDataError(
                    f"{where}: balance transaction {txn_id!r} is linked to both {other!r} and {payout_id!r}"
                )

    def document(self) -> dict:
        return {"balance_transactions": self.raw_txns, "payouts": self.raw_payouts}


def _split_document(doc: Any, origin: str) -> tuple[list, list]:
    if not isinstance(doc, dict):
        raise SandboxDataError(f"{origin}: must be a JSON object with 'balance_transactions' and 'payouts' lists")
    unknown = sorted(set(doc) - {"balance_transactions", "payouts"})
    if unknown:
        raise SandboxDataError(f"{origin}: unknown member {unknown[0]!r}; expected 'balance_transactions', 'payouts'")
    txns, payouts = doc.get("balance_transactions", []), doc.get("payouts", [])
    for name, value in (("balance_transactions", txns), ("payouts", payouts)):
        if not isinstance(value, list):
            raise SandboxDataError(f"{origin}: '{name}' must be a list")
    return list(txns), list(payouts)


# --------------------------------------------------------------------------- app


class StripeSandboxApp(SandboxApp):
    name = "stripe_sandbox"

    def __init__(self, data_path: Path | str, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.api_key = api_key
        self._req_counter = 0
        self._counter_lock = threading.Lock()
        doc = read_json_file(self.data_path, "stripe sandbox")
        txns, payouts = _split_document(doc or {}, str(self.data_path))
        try:
            self.state = _State(txns, payouts)
        except SandboxDataError as exc:
            raise SandboxDataError(f"{self.data_path}: {exc}") from None

    # -- envelopes
    def error_body(self, err: SandboxError) -> Any:
        etype = {
            401: "authentication_error",
            429: "rate_limit_error",
        }.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
        code = None if err.code in ("internal_error", "unauthorized") else err.code
        return {"error": {"type": etype, "message": err.message, "code": code, "param": err.field}}

    def handle(self, req: Request) -> Response | None:
        resp = super().handle(req)
        if resp is not None:
            with self._counter_lock:
                self._req_counter += 1
                # The SDK reports Request-Id in its errors; a stable counter keeps logs readable.
                resp.headers.setdefault("Request-Id", f"req_sandbox_{self._req_counter:06d}")
        return resp

    # -- auth
    def _authenticate(self, req: Request) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        key = None
        if scheme.lower() == "bearer":
            key = credential.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credential.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
        if not key:
            raise SandboxError(
                401, "unauthorized",
                "You did not provide an API key. Provide it in the Authorization header using Bearer auth "
                "(e.g. 'Authorization: Bearer sk_test_...').",
                headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
            )
        if key != self.api_key:
            shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "*" * len(key)
            raise SandboxError(
                401, "unauthorized", f"Invalid API Key provided: {shown}",
                headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
            )

    # -- API
    def api(self, req: Request) -> Response:
        self._authenticate(req)
        if req.method != "GET":
            raise SandboxError(
                405 if req.path.startswith("/v1/") else 404, "method_not_allowed",
                f"Unrecognized request URL ({req.method}: {req.path}). The sandbox only serves GET.",
            )
        with self.lock:
            state = self.state
        if req.path == "/v1/balance_transactions":
            return Response(200, self._list_txns(req, state))
        if req.path == "/v1/payouts":
            return Response(200, self._list_payouts(req, state))
        m = _TXN_ROUTE.match(req.path)
        if m:
            self._no_params(req)
            tid = unquote(m.group(1))
            if tid not in state.txns:
                raise SandboxError(404, "resource_missing", f"No such balance transaction: '{tid}'", "id")
            return Response(200, state.txns[tid])
        m = _PAYOUT_ROUTE.match(req.path)
        if m:
            self._no_params(req)
            pid = unquote(m.group(1))
            if pid not in state.payouts:
                raise SandboxError(404, "resource_missing", f"No such payout: '{pid}'", "id")
            return Response(200, state.payouts[pid])
        raise SandboxError(
            404, "resource_missing",
            f"Unrecognized request URL (GET: {req.path}). The sandbox serves /v1/balance_transactions and /v1/payouts.",
        )

    @staticmethod
    def _no_params(req: Request) -> None:
        for key in req.params():
            raise SandboxError(400, "parameter_unknown", f"Received unknown parameter: {key}", key)

    def _list_txns(self, req: Request, state: _State) -> dict:
        params = req.params()
        allowed = {"payout", "type", "currency", "source"}
        filters = self._common_list_params(params, allowed, ("created",))
        items = list(state.txns.values())
        if "payout" in params:
            pid = params["payout"]
            if pid not in state.payouts:
                raise SandboxError(404, "resource_missing", f"No such payout: '{pid}'", "payout")
            items = [t for t in items if state.payout_of.get(t["id"]) == pid]
        if "type" in params:
            items = [t for t in items if t["type"] == params["type"]]
        if "currency" in params:
            items = [t for t in items if t["currency"] == params["currency"].lower()]
        if "source" in params:
            items = [t for t in items if t["source"] == params["source"]]
        return self._page(req, items, filters, state.txns, "/v1/balance_transactions", "balance transaction")

    def _list_payouts(self, req: Request, state: _State) -> dict:
        params = req.params()
        filters = self._common_list_params(params, {"status"}, ("created", "arrival_date"))
        items = list(state.payouts.values())
        if "status" in params:
            if params["status"] not in PAYOUT_STATUSES:
                raise SandboxError(
                    400, "parameter_invalid_string",
                    f"Invalid status: must be one of {', '.join(PAYOUT_STATUSES)}", "status",
                )
            items = [p for p in items if p["status"] == params["status"]]
        return self._page(req, items, filters, state.payouts, "/v1/payouts", "payout")

    @staticmethod
    def _common_list_params(params: dict[str, str], allowed: set[str], ranges: tuple[str, ...]) -> dict:
        range_keys = {f"{r}[{op}]" for r in ranges for op in ("gt", "gte", "lt", "lte")} | set(ranges)
        allowed = allowed | range_keys | {"limit", "starting_after", "ending_before"}
        for key in params:
            if key not in allowed:
                raise SandboxError(400, "parameter_unknown", f"Received unknown parameter: {key}", key)
        bounds: list[tuple[str, str, int]] = []
        for key in sorted(range_keys & set(params)):
            value = params[key]
            if not re.fullmatch(r"-?\d+", value):
                raise SandboxError(
                    400, "parameter_invalid_integer",
                    f"Invalid integer: {value!r}; '{key}' takes unix seconds", key,
                )
            field, _, op = key.partition("[")
            bounds.append((field, op.rstrip("]") or "eq", int(value)))
        limit = 10
        if "limit" in params:
            raw = params["limit"]
            if not re.fullmatch(r"-?\d+", raw):
                raise SandboxError(400, "parameter_invalid_integer", f"Invalid integer: {raw!r}", "limit")
            limit = int(raw)
            if not 1 <= limit <= 100:
                raise SandboxError(
                    400, "parameter_invalid_integer",
                    f"Invalid limit {limit}: it must be between 1 and 100", "limit",
                )
        if "starting_after" in params and "ending_before" in params:
            raise SandboxError(
                400, "parameter_invalid_string",
                "You may only specify one of these parameters: starting_after, ending_before", "ending_before",
            )
        return {"bounds": bounds, "limit": limit}

    @staticmethod
    def _page(req: Request, items: list[dict], filters: dict, by_id: dict, url: str, noun: str) -> dict:
        ops = {
            "gt": lambda v, b: v > b, "gte": lambda v, b: v >= b,
            "lt": lambda v, b: v < b, "lte": lambda v, b: v <= b, "eq": lambda v, b: v == b,
        }
        for field, op, bound in filters["bounds"]:
            items = [o for o in items if ops[op](o[field], bound)]
        # Newest first, ties broken by id descending, as Stripe lists.
        items.sort(key=lambda o: (o["created"], o["id"]), reverse=True)
        limit = filters["limit"]
        params = req.params()
        for cursor_param in ("starting_after", "ending_before"):
            if cursor_param in params:
                cid = params[cursor_param]
                if cid not in by_id:
                    raise SandboxError(404, "resource_missing", f"No such {noun}: '{cid}'", cursor_param)
                ckey = (by_id[cid]["created"], cid)
                if cursor_param == "starting_after":
                    rest = [o for o in items if (o["created"], o["id"]) < ckey]
                    page, has_more = rest[:limit], len(rest) > limit
                else:
                    rest = [o for o in items if (o["created"], o["id"]) > ckey]
                    page, has_more = rest[-limit:], len(rest) > limit
                break
        else:
            page, has_more = items[:limit], len(items) > limit
        return {"object": "list", "data": page, "has_more": has_more, "url": url}

    # -- admin
    def admin(self, req: Request) -> Response | None:
        if req.path != "/_sandbox/objects":
            return None
        if req.method != "POST":
            raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}; use POST")
        return Response(200, self.add_objects(req.json()))

    def add_objects(self, doc: Any) -> dict:
        """Add objects (data-file shape); re-adding an identical object is a no-op.

        The file is rewritten atomically before the new state is served.
        """
        new_txns, new_payouts = _split_document(doc, "objects")
        with self.lock:
            state = self.state
            added: dict[str, list[str]] = {"balance_transactions": [], "payouts": []}
            unchanged: list[str] = []
            raw_txns, raw_payouts = list(state.raw_txns), list(state.raw_payouts)
            by_id = {
                "balance_transactions": {t.get("id"): t for t in state.raw_txns},
                "payouts": {p.get("id"): p for p in state.raw_payouts},
            }
            norm = {"balance_transactions": normalise_balance_transaction, "payouts": normalise_payout}
            for kind, news, out in (
                ("balance_transactions", new_txns, raw_txns),
                ("payouts", new_payouts, raw_payouts),
            ):
                for i, raw in enumerate(news):
                    where = _where(kind, i, raw)
                    mine = norm[kind](raw, where)
                    oid = mine[0]["id"]
                    if oid in by_id[kind]:
                        if norm[kind](by_id[kind][oid], where) != mine:
                            raise SandboxError(
                                409, "resource_already_exists",
                                f"{where}: {oid} already exists with different content; use a new id",
                                "id",
                            )
                        unchanged.append(oid)
                        continue
                    by_id[kind][oid] = raw
                    out.append(raw)
                    added[kind].append(oid)
            new_state = _State(raw_txns, raw_payouts)
            if added["balance_transactions"] or added["payouts"]:
                write_json_atomic(self.data_path, new_state.document())
            self.state = new_state
        return {"added": added, "unchanged": unchanged}


# --------------------------------------------------------------------------- running


class StripeSandboxHandle(SandboxHandle):
    """A running Stripe sandbox: ``url`` (use as the SDK's api base), ``api_key``, ``data_path``."""

    def __init__(self, server: SandboxServer, data_path: Path, api_key: str) -> None:
        super().__init__(server, data_path)
        self.api_key = api_key

    def add_objects(
        self, balance_transactions: list[dict] | None = None, payouts: list[dict] | None = None
    ) -> dict[str, Any]:
        """Add objects through ``POST /_sandbox/objects`` (persisted to the data file)."""
        return self._call(
            "POST", "/_sandbox/objects",
            {"balance_transactions": balance_transactions or [], "payouts": payouts or []},
        )


def start_stripe_sandbox(
    data_path: Path | str,
    *,
    api_key: str = DEFAULT_API_KEY,
    host: str = "127.0.0.1",
    port: int = 0,
) -> StripeSandboxHandle:
    """Start the Stripe sandbox in a background thread (``port=0`` picks a free port)."""
    app = StripeSandboxApp(data_path, api_key=api_key)
    server = SandboxServer(app, host=host, port=port)
    server.start()
    return StripeSandboxHandle(server, Path(data_path), api_key)
