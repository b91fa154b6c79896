"""Sandbox of our (invented) payout provider: JSON over HTTP with Bearer-token auth.

API: ``POST /payouts`` (idempotent on ``payout_id``), ``GET /payouts/{id}``, ``GET /payouts``,
``POST /payouts/{id}/settle``, ``GET /settlements``. Errors are
``{"error": {"code": ..., "message": ..., "field": ...|null}}``.

State lives in a JSON file rewritten atomically after every mutation, so a restarted sandbox
carries on where it stopped::

    {"payouts": [{"id": "p1", "payout_id": "p1", "amount_minor": 1000, "currency": "USD",
                  "destination": "acct_1", "metadata": {}, "status": "pending",
                  "created_at": "2026-01-01T00:00:00Z", "updated_at": "...", "settled_at": null,
                  "settlement_id": null}],
     "stuck_payout_ids": ["p2"]}

Settlement records are derived from settled/failed payouts (one per payout, id
``stl_<payout_id>``), so the file cannot hold a settlement that disagrees with its payout.
A stuck payout id (which may name a payout not created yet) never settles: settle answers 202
with the still-pending payout.

Admin endpoints (no auth; a local test double): ``POST /_sandbox/stuck``
``{"payout_ids": [...], "stuck": true|false}``, ``POST /_sandbox/objects`` with the data-file
shape to seed payouts with any timestamps, plus the shared ``/_sandbox/faults`` and
``/_sandbox/requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from finance_pipeline.domain.money import is_currency
from finance_pipeline.domain.timeutil import TimestampError, format_ts_us, parse_ts_us
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

DEFAULT_TOKEN = "payout_sandbox_token"
PAYOUT_STATUSES = ("pending", "settled", "failed")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CREATE_FIELDS = ("payout_id", "amount_minor", "currency", "destination", "metadata")
_PAYOUT_ROUTE = re.compile(r"^/payouts/([^/]+)$")
_SETTLE_ROUTE = re.compile(r"^/payouts/([^/]+)/settle$")


def _now_us() -> int:
    return time.time_ns() // 1000


def _invalid(field: str, message: str) -> SandboxError:
    return SandboxError(422, "invalid_field", f"{field}: {message}", field)


def validate_create(body: Any) -> dict:
    """The normalised create request, or a 422 naming the bad field."""
    if not isinstance(body, dict):
        raise SandboxError(400, "invalid_json", "request body must be a JSON object")
    for key in body:
        if key not in _CREATE_FIELDS:
            raise _invalid(key, f"unknown field; allowed: {', '.join(_CREATE_FIELDS)}")
    pid = body.get("payout_id")
    if not isinstance(pid, str) or not _ID_RE.match(pid):
        raise _invalid(
            "payout_id",
            f"must be 1-128 characters of letters, digits and _.:- starting with a letter or digit, got {pid!r}",
        )
    amount = body.get("amount_minor")
    if not is_int(amount):
        raise _invalid(
            "amount_minor",
            f"must be an integer number of minor units (e.g. 1050 for 10.50), got {json.dumps(amount)}",
        )
    if amount <= 0:
        raise _invalid("amount_minor", f"must be positive, got {amount}")
    currency = body.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency) or not is_currency(currency):
        raise _invalid("currency", f"must be a 3-letter ISO 4217 code in capitals such as 'USD', got {currency!r}")
    destination = body.get("destination")
    if not isinstance(destination, str) or not destination:
        raise _invalid("destination", f"must be a non-empty string, got {destination!r}")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _invalid("metadata", f"must be a JSON object, got {json.dumps(metadata)}")
    return {
        "payout_id": pid,
        "amount_minor": amount,
        "currency": currency,
        "destination": destination,
        "metadata": metadata,
    }


def _ts_field(obj: dict, key: str, where: str, nullable: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and nullable:
        return None
    try:
        return format_ts_us(parse_ts_us(value))
    except TimestampError as exc:
        raise SandboxDataError(f"{where}: '{key}' {exc}") from None


def normalise_payout(raw: Any, where: str) -> dict:
    """A stored payout (data file or seeded object) with defaults filled and fields checked."""
    if not isinstance(raw, dict):
        raise SandboxDataError(f"{where}: must be a JSON object")
    core = {k: raw[k] for k in _CREATE_FIELDS if k in raw}
    if "payout_id" not in core and "id" in raw:
        core["payout_id"] = raw["id"]
    try:
        req = validate_create(core)
    except SandboxError as err:
        raise SandboxDataError(f"{where}: {err.message}") from None
    pid = req["payout_id"]
    if raw.get("id", pid) != pid:
        raise SandboxDataError(f"{where}: 'id' must equal 'payout_id' ({pid!r}), got {raw.get('id')!r}")
    status = raw.get("status", "pending")
    if status not in PAYOUT_STATUSES:
        raise SandboxDataError(f"{where}: 'status' must be one of {', '.join(PAYOUT_STATUSES)}, got {status!r}")
    created_at = _ts_field(raw, "created_at", where)
    settled_at = _ts_field(raw, "settled_at", where, nullable=True)
    if status == "pending" and settled_at is not None:
        raise SandboxDataError(f"{where}: a pending payout cannot have 'settled_at'; set it to null")
    if status != "pending" and settled_at is None:
        raise SandboxDataError(f"{where}: a {status} payout needs 'settled_at' (when the settlement finished)")
    updated_at = _ts_field(raw, "updated_at", where, nullable=True) or settled_at or created_at
    known = {"id", "status", "created_at", "updated_at", "settled_at", "settlement_id", *_CREATE_FIELDS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SandboxDataError(f"{where}: unknown member {unknown[0]!r}")
    return {
        "id": pid,
        **req,
        "status": status,
        "created_at": created_at,
        "updated_at": updated_at,
        "settled_at": settled_at,
        "settlement_id": None if status == "pending" else f"stl_{pid}",
    }


def settlement_of(payout: dict) -> dict:
    """The settlement record of a settled or failed payout."""
    return {
        "id": f"stl_{payout['payout_id']}",
        "payout_id": payout["payout_id"],
        "amount_minor": payout["amount_minor"],
        "currency": payout["currency"],
        "status": payout["status"],
        "settled_at": payout["settled_at"],
    }


def _parse_document(doc: Any, origin: str) -> tuple[dict[str, dict], set[str]]:
    if not isinstance(doc, dict):
        raise SandboxDataError(f"{origin}: must be a JSON object with 'payouts' and 'stuck_payout_ids'")
    unknown = sorted(set(doc) - {"payouts", "stuck_payout_ids"})
    if unknown:
        raise SandboxDataError(f"{origin}: unknown member {unknown[0]!r}; expected 'payouts', 'stuck_payout_ids'")
    raw_payouts = doc.get("payouts", [])
    if not isinstance(raw_payouts, list):
        raise SandboxDataError(f"{origin}: 'payouts' must be a list")
    payouts: dict[str, dict] = {}
    for i, raw in enumerate(raw_payouts):
        where = f"{origin}: payouts[{i}]"
        p = normalise_payout(raw, where)
        if p["id"] in payouts:
            raise SandboxDataError(f"{where}: duplicate payout_id {p['id']!r}")
        payouts[p["id"]] = p
    stuck = doc.get("stuck_payout_ids", [])
    if not isinstance(stuck, list) or not all(isinstance(s, str) and _ID_RE.match(s) for s in stuck):
        raise SandboxDataError(f"{origin}: 'stuck_payout_ids' must be a list of payout ids")
    return payouts, set(stuck)


# --------------------------------------------------------------------------- cursors


def _query_fingerprint(kind: str, filters: dict) -> str:
    text = json.dumps([kind, filters], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_cursor(kind: str, filters: dict, last_key: tuple[int, str]) -> str:
    payload = {"k": list(last_key), "q": _query_fingerprint(kind, filters)}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(kind: str, filters: dict, cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ts, oid = payload["k"]
        fingerprint = payload["q"]
        if not is_int(ts) or not isinstance(oid, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise SandboxError(
            400, "invalid_cursor", "cursor is not one this server issued; pass next_cursor back unchanged", "cursor"
        ) from None
    if fingerprint != _query_fingerprint(kind, filters):
        raise SandboxError(
            400, "invalid_cursor",
            "cursor was issued for a different query; keep the other parameters the same while paging", "cursor",
        )
    return ts, oid


# --------------------------------------------------------------------------- app


class PayoutSandboxApp(SandboxApp):
    name = "payout_sandbox"

    def __init__(
        self,
        data_path: Path | str,
        token: str = DEFAULT_TOKEN,
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.token = token
        self.clock = clock or _now_us
        doc = read_json_file(self.data_path, "payout sandbox")
        self.payouts, self.stuck = _parse_document(doc or {}, str(self.data_path))
        if doc is None:
            # Create the file so a restart (and a human) sees the same empty state.
            self._persist(self.payouts, self.stuck)

    def error_body(self, err: SandboxError) -> Any:
        return {"error": {"code": err.code, "message": err.message, "field": err.field}}

    def _persist(self, payouts: dict[str, dict], stuck: set[str]) -> None:
        write_json_atomic(
            self.data_path,
            {
                "payouts": [payouts[k] for k in sorted(payouts)],
                "stuck_payout_ids": sorted(stuck),
            },
        )

    def _commit(self, payouts: dict[str, dict], stuck: set[str]) -> None:
        # Write first, then swap: a failed write leaves the served state unchanged.
        self._persist(payouts, stuck)
        self.payouts, self.stuck = payouts, stuck

    def _authenticate(self, req: Request) -> None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SandboxError(
                401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if token.strip() != self.token:
            raise SandboxError(
                401, "unauthorized", "invalid bearer token; check the payout provider token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    # -- API
    def api(self, req: Request) -> Response:
        self._authenticate(req)
        if req.path == "/payouts":
            if req.method == "POST":
                return self._create(req)
            if req.method == "GET":
                return Response(200, self._list_payouts(req.params()))
            raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on /payouts")
        if req.path == "/settlements":
            if req.method == "GET":
                return Response(200, self._list_settlements(req.params()))
            raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on /settlements")
        m = _SETTLE_ROUTE.match(req.path)
        if m:
            if req.method != "POST":
                raise SandboxError(405, "method_not_allowed", f"use POST to settle, not {req.method}")
            return self._settle(unquote(m.group(1)), req.json(required=False))
        m = _PAYOUT_ROUTE.match(req.path)
        if m:
            if req.method != "GET":
                raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}")
            pid = unquote(m.group(1))
            with self.lock:
                payout = self.payouts.get(pid)
            if payout is None:
                raise SandboxError(404, "not_found", f"payout {pid!r} does not exist", "payout_id")
            return Response(200, payout)
        raise SandboxError(404, "not_found", f"no endpoint {req.method} {req.path}")

    def _create(self, req: Request) -> Response:
        wanted = validate_create(req.json())
        pid = wanted["payout_id"]
        with self.lock:
            existing = self.payouts.get(pid)
            if existing is not None:
                differing = [k for k in _CREATE_FIELDS if existing[k] != wanted[k]]
                if differing:
                    raise SandboxError(
                        409, "idempotency_conflict",
                        f"payout {pid!r} already exists with a different {differing[0]} "
                        f"({json.dumps(existing[differing[0]])}); a retry must send the same body, "
                        "a new payout needs a new payout_id",
                        differing[0],
                    )
                return Response(200, existing)
            now = format_ts_us(self.clock())
            payout = {
                "id": pid,
                **wanted,
                "status": "pending",
                "created_at": now,
                "updated_at": now,
                "settled_at": None,
                "settlement_id": None,
            }
            self._commit({**self.payouts, pid: payout}, self.stuck)
        return Response(201, payout)

    def _settle(self, pid: str, body: Any) -> Response:
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise SandboxError(400, "invalid_json", "settle body must be a JSON object or empty")
        for key in body:
            if key not in ("settled_at", "fail"):
                raise _invalid(key, "unknown field; allowed: settled_at, fail")
        fail = body.get("fail", False)
        if not isinstance(fail, bool):
            raise _invalid("fail", f"must be true or false, got {json.dumps(fail)}")
        settled_at = None
        if body.get("settled_at") is not None:
            try:
                settled_at = format_ts_us(parse_ts_us(body["settled_at"]))
            except TimestampError as exc:
                raise _invalid("settled_at", str(exc)) from None
        outcome = "failed" if fail else "settled"
        with self.lock:
            payout = self.payouts.get(pid)
            if payout is None:
                raise SandboxError(404, "not_found", f"payout {pid!r} does not exist", "payout_id")
            if payout["status"] != "pending":
                if payout["status"] != outcome:
                    raise SandboxError(
                        409, "already_finished",
                        f"payout {pid!r} is already {payout['status']}; it cannot become {outcome}",
                        "fail",
                    )
                if settled_at is not None and settled_at != payout["settled_at"]:
                    raise SandboxError(
                        409, "already_finished",
                        f"payout {pid!r} already {outcome} at {payout['settled_at']}, not {settled_at}",
                        "settled_at",
                    )
                return Response(200, settlement_of(payout))
            if pid in self.stuck:
                return Response(202, payout)
            now = format_ts_us(self.clock())
            updated = {
                **payout,
                "status": outcome,
                "settled_at": settled_at or now,
                "updated_at": now,
                "settlement_id": f"stl_{pid}",
            }
            self._commit({**self.payouts, pid: updated}, self.stuck)
        return Response(200, settlement_of(updated))

    # -- listing
    @staticmethod
    def _check_params(params: dict[str, str], allowed: tuple[str, ...]) -> None:
        for key in params:
            if key not in allowed:
                raise SandboxError(
                    400, "invalid_parameter", f"unknown query parameter {key!r}; allowed: {', '.join(allowed)}", key
                )

    @staticmethod
    def _ts_param(params: dict[str, str], key: str) -> int | None:
        if not params.get(key):
            return None
        try:
            return parse_ts_us(params[key])
        except TimestampError as exc:
            raise SandboxError(400, "invalid_parameter", f"{key}: {exc}", key) from None

    @staticmethod
    def _limit(params: dict[str, str]) -> int:
        raw = params.get("limit")
        if raw is None or raw == "":
            return DEFAULT_LIMIT
        if not re.fullmatch(r"\d+", raw) or not 1 <= int(raw) <= MAX_LIMIT:
            raise SandboxError(
                400, "invalid_parameter", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}", "limit"
            )
        return int(raw)

    def _window_page(
        self, kind: str, rows: list[tuple[int, str, dict]], params: dict[str, str], filters: dict,
        lo: int | None, hi: int | None,
    ) -> dict:
        limit = self._limit(params)
        # Half-open [lo, hi): a row on the boundary belongs to exactly one of two adjacent windows.
        rows = [r for r in rows if (lo is None or r[0] >= lo) and (hi is None or r[0] < hi)]
        rows.sort(key=lambda r: (r[0], r[1]))
        if params.get("cursor"):
            after = _decode_cursor(kind, filters, params["cursor"])
            rows = [r for r in rows if (r[0], r[1]) > after]
        page = rows[:limit]
        next_cursor = _encode_cursor(kind, filters, (page[-1][0], page[-1][1])) if len(rows) > limit else None
        return {"data": [r[2] for r in page], "next_cursor": next_cursor}

    def _list_payouts(self, params: dict[str, str]) -> dict:
        self._check_params(params, ("status", "created_from", "created_to", "cursor", "limit"))
        status = params.get("status") or None
        if status is not None and status not in PAYOUT_STATUSES:
            raise SandboxError(
                400, "invalid_parameter", f"status must be one of {', '.join(PAYOUT_STATUSES)}, got {status!r}",
                "status",
            )
        lo, hi = self._ts_param(params, "created_from"), self._ts_param(params, "created_to")
        with self.lock:
            rows = [
                (parse_ts_us(p["created_at"]), p["id"], p)
                for p in self.payouts.values()
                if status is None or p["status"] == status
            ]
        filters = {"status": status, "from": lo, "to": hi}
        return self._window_page("payouts", rows, params, filters, lo, hi)

    def _list_settlements(self, params: dict[str, str]) -> dict:
        self._check_params(params, ("from", "to", "cursor", "limit"))
        lo, hi = self._ts_param(params, "from"), self._ts_param(params, "to")
        with self.lock:
            rows = [
                (parse_ts_us(p["settled_at"]), f"stl_{p['id']}", settlement_of(p))
                for p in self.payouts.values()
                if p["status"] != "pending"
            ]
        return self._window_page("settlements", rows, params, {"from": lo, "to": hi}, lo, hi)

    # -- admin
    def admin(self, req: Request) -> Response | None:
        if req.path == "/_sandbox/stuck":
            if req.method != "POST":
                raise SandboxError(405, "method_not_allowed", "use POST /_sandbox/stuck")
            return Response(200, self._set_stuck(req.json()))
        if req.path == "/_sandbox/objects":
            if req.method != "POST":
                raise SandboxError(405, "method_not_allowed", "use POST /_sandbox/objects")
            return Response(200, self.add_objects(req.json()))
        return None

    def _set_stuck(self, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("payout_ids"), list):
            raise SandboxError(400, "invalid_json", 'send {"payout_ids": ["..."], "stuck": true}', "payout_ids")
        ids = body["payout_ids"]
        if not all(isinstance(i, str) and _ID_RE.match(i) for i in ids):
            raise SandboxError(400, "invalid_field", "payout_ids must be a list of payout ids", "payout_ids")
        stuck = body.get("stuck", True)
        if not isinstance(stuck, bool):
            raise SandboxError(400, "invalid_field", "stuck must be true or false", "stuck")
        with self.lock:
            new = set(self.stuck) | set(ids) if stuck else set(self.stuck) - set(ids)
            self._commit(self.payouts, new)
            return {"stuck_payout_ids": sorted(new)}

    def add_objects(self, doc: Any) -> dict:
        """Seed payouts (data-file shape); re-adding an identical payout is a no-op."""
        payouts, stuck = _parse_document(doc, "objects")
        with self.lock:
            merged = dict(self.payouts)
            added, unchanged = [], []
            for pid in sorted(payouts):
                if pid in merged:
                    if merged[pid] != payouts[pid]:
                        raise SandboxError(
                            409, "idempotency_conflict",
                            f"payout {pid!r} already exists with different content; use a new payout_id",
                            "payout_id",
                        )
                    unchanged.append(pid)
                    continue
                merged[pid] = payouts[pid]
                added.append(pid)
            self._commit(merged, self.stuck | stuck)
        return {"added": {"payouts": added}, "unchanged": unchanged}


# --------------------------------------------------------------------------- running


class PayoutSandboxHandle(SandboxHandle):
    """A running payout sandbox: ``url``, ``token``, ``data_path``."""

    def __init__(self, server: SandboxServer, data_path: Path, token: str) -> None:
        super().__init__(server, data_path)
        self.token = token

    def add_objects(self, payouts: list[dict] | None = None, stuck_payout_ids: list[str] | None = None) -> dict:
        """Seed payouts with chosen timestamps through ``POST /_sandbox/objects``."""
        return self._call(
            "POST", "/_sandbox/objects", {"payouts": payouts or [], "stuck_payout_ids": stuck_payout_ids or []}
        )

    def mark_stuck(self, payout_ids: list[str], stuck: bool = True) -> list[str]:
        """Mark payouts as stuck (or not); returns all stuck ids."""
        return self._call("POST", "/_sandbox/stuck", {"payout_ids": list(payout_ids), "stuck": stuck})[
            "stuck_payout_ids"
        ]


def start_payout_sandbox(
    data_path: Path | str,
    *,
    token: str = DEFAULT_TOKEN,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], int] | None = None,
) -> PayoutSandboxHandle:
    """Start the payout sandbox in a background thread (``port=0`` picks a free port).

    ``clock`` returns "now" in UTC microseconds; pass one for reproducible demos.
    """
    app = PayoutSandboxApp(data_path, token=token, clock=clock)
    server = SandboxServer(app, host=host, port=port)
    server.start()
    return PayoutSandboxHandle(server, Path(data_path), token)
