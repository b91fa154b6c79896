"""The Finance HTTP API: post and list journal entries, read proofs, approve and settle payouts.

``create_app(engine, tokens=..., payout_client=..., settings=...)`` builds the FastAPI app;
``finance-pipeline serve`` runs it under uvicorn. Every error answers
``{"errors": [{"field": ..., "message": ...}]}``; a rejected request writes nothing, and every
accepted mutation writes an audit event (through the posting core and the payout service).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finance_pipeline.api import schemas
from finance_pipeline.api.common import (  # noqa: F401 - re-exported: tests and docs name them here
    API_VERSION,
    DAY_PATTERN,
    EXAMPLE_PAYOUT_ID,
    EXAMPLE_PROOF_ID,
    PAYOUT_ID_PATTERN,
    PROOF_ID_PATTERN,
    ApiContext,
)
from finance_pipeline.api.auth import ApiError, authenticate
from finance_pipeline.api.routes import journal, payouts, proofs
from finance_pipeline.api.tokens import Principal, TokenDirectory
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.ledger.audit import now_us
from finance_pipeline.ledger.posting import EntryWindow
from finance_pipeline.payouts.policy import PayoutPolicy
from finance_pipeline.settings import DEFAULT_JOURNAL_REVIEW_TTL_S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    """Limits and collaborators of the API. ``clock`` returns UTC microseconds (tests inject it)."""

    max_body_bytes: int = 64 * 1024
    default_page_size: int = 100
    max_page_size: int = 500
    payout_policy: PayoutPolicy | None = None  # None: the built-in tiers (serve passes FP_PAYOUT_TIERS)
    review_ttl_s: int = DEFAULT_JOURNAL_REVIEW_TTL_S  # how long a submitted entry waits for its review (FP_JOURNAL_REVIEW_TTL_S)
    entry_window: EntryWindow = EntryWindow()  # which timestamps an entry may have (FP_PARTITIONS_START, ...)
    clock: Callable[[], int] = field(default=now_us)


# --------------------------------------------------------------------------- body limit


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, counted on the raw stream.

    A declared Content-Length over the limit is refused before reading; a chunked body is
    counted as it arrives. Up to ``drain_bytes`` of an oversized body are read and dropped
    first, so the client (still sending) gets the 413 instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 1024 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            if declared <= self.drain_bytes:
                await self._drain(receive, 0)
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, total)
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, seen: int) -> None:
        while seen <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _too_large(self, send: Send) -> None:
        error = ApiError(413, [FieldError("$", f"request body exceeds this API's limit of "
                                                f"{self.max_bytes} bytes; post one entry per request")])
        payload = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": payload})


def create_app(
    engine: sa.Engine,
    *,
    tokens: TokenDirectory,
    payout_client: Any = None,
    settings: ApiSettings = ApiSettings(),
) -> FastAPI:
    """The Finance API over ``engine``; ``tokens`` authenticates requests and knows the actors.

    ``payout_client`` (a PayoutProviderClient) is needed only to settle payouts; without it
    the settle endpoint answers 503.
    """
    policy = settings.payout_policy or PayoutPolicy()
    app = FastAPI(
        title="finance-pipeline Finance API",
        version=API_VERSION,
        description="Journal entries (finance-journal/1), proofs, and payout approvals. "
                    "Authenticate with `Authorization: Bearer <token>`; money is integer minor units.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="A token from `finance-pipeline tokens add`.")

    def principal(request: Request, _: Any = Security(bearer)) -> Principal:
        return authenticate(request.headers.get("authorization"), tokens)

    async def raw_body(request: Request) -> bytes:
        return await request.body()

    # -- error handlers: one shape for every error
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
            name = ".".join(loc) or "$"
            errors.append({"field": name, "message": _friendly(name, err)})
        return JSONResponse({"errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field_name = "$" if exc.status_code != 405 else "method"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}"
        return JSONResponse({"errors": [{"field": field_name, "message": message}]},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"errors": [{"field": "$", "message": "the ledger database is unavailable; "
                                                                  "retry later"}]}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"errors": [{"field": "$", "message": "internal error; the server log has "
                                                                  "the details"}]}, status_code=500)

    ctx = ApiContext(engine=engine, settings=settings, policy=policy, payout_client=payout_client,
                     principal=principal, raw_body=raw_body)
    for router in (journal.build_router(ctx), proofs.build_router(ctx), payouts.build_router(ctx)):
        app.include_router(router)

    app.openapi = _openapi_with_inputs(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.policy = policy
    return app


_FRIENDLY = {
    "from": "must be a UTC day written YYYY-MM-DD, e.g. 2026-11-02",
    "to": "must be a UTC day written YYYY-MM-DD, e.g. 2026-11-02",
    "payout_id": "must be 1-64 characters of letters, digits and _ . : - starting with a letter or digit",
    "proof_id": "must be 1-128 characters of letters, digits and _ . : - starting with a letter or digit",
}


def _friendly(name: str, err: dict[str, Any]) -> str:
    if name in _FRIENDLY and err.get("type") in ("string_pattern_mismatch", "string_too_long", "missing"):
        prefix = "is required; it " if err.get("type") == "missing" else ""
        return prefix + _FRIENDLY[name]
    return str(err.get("msg", "is invalid"))


def _openapi_with_inputs(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated document plus the raw-body request schemas it references."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.JournalEntryInput, schemas.ApprovalInput):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app.openapi_schema = doc
        return doc

    return openapi
