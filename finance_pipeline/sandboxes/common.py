"""Shared plumbing for the local HTTP sandboxes: server, JSON helpers, faults, request log.

The sandboxes are test doubles that run on the stdlib threaded HTTP server so they start in
milliseconds, in-process (tests, demo) or in the foreground (CLI). Everything under
``/_sandbox/`` is an admin endpoint that needs no auth: it exists only to steer the double.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from finance_pipeline.files import write_atomic

log = logging.getLogger("finance_pipeline.sandboxes")

MAX_BODY_BYTES = 10 * 1024 * 1024
ADMIN_PREFIX = "/_sandbox/"


class SandboxDataError(ValueError):
    """A sandbox data file or seeded object is malformed."""


class SandboxError(Exception):
    """An error response; each sandbox renders it in its own envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def params(self) -> dict[str, str]:
        """Query parameters with one value each; a repeated parameter is a 400."""
        out: dict[str, str] = {}
        for key, values in self.query.items():
            if len(values) > 1:
                raise SandboxError(
                    400, "parameter_repeated", f"query parameter {key!r} was given more than once", key
                )
            out[key] = values[0]
        return out

    def json(self, *, required: bool = True) -> Any:
        """The body parsed as JSON; an empty body is None when not required."""
        if not self.body.strip():
            if required:
                raise SandboxError(400, "invalid_json", "request body is empty; send a JSON object")
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SandboxError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class EncodedJSON(bytes):
    """A response body already encoded exactly as ``json_bytes`` would encode it: sent as is."""


def json_bytes(value: Any) -> bytes:
    # Sorted keys keep responses and files byte-for-byte reproducible.
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` via a temp file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def read_json_file(path: Path, what: str) -> Any | None:
    """Parsed JSON of ``path``, or None when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SandboxDataError(f"{path}: {what} data file is not valid JSON: {exc}") from None


def is_int(value: Any) -> bool:
    """True for a real integer (bool is an int subclass in Python, but not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class FaultDecision:
    """What the next API request suffers: ``kind`` is None, rate_limit, server_error or disconnect."""

    kind: str | None
    delay_s: float = 0.0
    retry_after: float | None = None
    status: int = 200


_FAULT_KEYS = ("after", "rate_limit", "retry_after", "server_error", "server_error_status", "disconnect", "delay_ms")

_NO_FAULTS: dict[str, Any] = {
    "after": 0,
    "rate_limit": 0,
    "retry_after": None,
    "server_error": 0,
    "server_error_status": 500,
    "disconnect": 0,
    "delay_ms": 0,
}


class Faults:
    """Switchable failures for the next API requests (admin requests are never affected).

    Configure with e.g. ``{"rate_limit": 2, "retry_after": 1, "server_error": 1, "delay_ms": 200}``:
    the next 2 requests get 429 with ``Retry-After: 1``, the one after that gets 500, and every
    response waits 200 ms until the faults are cleared. Counts are consumed in the order
    rate_limit, server_error, disconnect (the connection is closed with no response at all);
    ``after: n`` lets n requests through untouched first, to fail in the middle of paging.
    Each ``configure`` replaces the whole previous setting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._state = dict(_NO_FAULTS)

    def configure(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise SandboxError(400, "invalid_faults", "faults must be a JSON object such as {\"rate_limit\": 2}")
        unknown = sorted(set(spec) - set(_FAULT_KEYS))
        if unknown:
            raise SandboxError(
                400, "invalid_faults", f"unknown fault {unknown[0]!r}; known: {', '.join(_FAULT_KEYS)}", unknown[0]
            )
        new = dict(_NO_FAULTS)
        for key in ("after", "rate_limit", "server_error", "disconnect", "delay_ms"):
            value = spec.get(key, 0)
            if not is_int(value) or value < 0:
                raise SandboxError(400, "invalid_faults", f"{key} must be a non-negative integer, got {value!r}", key)
            new[key] = value
        ra = spec.get("retry_after")
        if ra is not None and (isinstance(ra, bool) or not isinstance(ra, (int, float)) or ra < 0):
            raise SandboxError(
                400, "invalid_faults",
                f"retry_after must be a non-negative number of seconds, got {ra!r}", "retry_after",
            )
        new["retry_after"] = ra
        status = spec.get("server_error_status", 500)
        if not is_int(status) or not 500 <= status <= 599:
            raise SandboxError(
                400, "invalid_faults", f"server_error_status must be a 5xx status code, got {status!r}",
                "server_error_status",
            )
        new["server_error_status"] = status
        with self._lock:
            self._state = new

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def next(self) -> FaultDecision:
        """Consume and return the fault for one API request."""
        with self._lock:
            s = self._state
            delay = s["delay_ms"] / 1000.0
            if s["after"]:
                s["after"] -= 1
                return FaultDecision(None, delay)
            if s["rate_limit"]:
                s["rate_limit"] -= 1
                return FaultDecision("rate_limit", delay, s["retry_after"], 429)
            if s["server_error"]:
                s["server_error"] -= 1
                return FaultDecision("server_error", delay, None, s["server_error_status"])
            if s["disconnect"]:
                s["disconnect"] -= 1
                return FaultDecision("disconnect", delay, None, 0)
            return FaultDecision(None, delay)


def format_retry_after(seconds: float) -> str:
    # Whole seconds as "1"; fractions are a sandbox extension that our client honours.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class RequestLog:
    """API requests served, in arrival order, so tests can see retries happen.

    ``status`` is 0 for a request whose connection was dropped by the disconnect fault.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def record(self, req: Request, status: int, fault: str | None) -> None:
        with self._lock:
            self._entries.append(
                {
                    "seq": len(self._entries) + 1,
                    "method": req.method,
                    "path": req.path,
                    "query": req.query_string,
                    "params": {k: v[0] if len(v) == 1 else v for k, v in req.query.items()},
                    "status": status,
                    "fault": fault,
                    # What the client says it is (Stripe's SDK names its HTTP library here).
                    "client": req.headers.get("x-stripe-client-user-agent") or req.headers.get("user-agent"),
                }
            )

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries = []


# --------------------------------------------------------------------------- app base


class SandboxApp:
    """Request dispatch shared by the sandboxes; subclasses supply the API and the envelopes.

    Admin endpoints (no auth, never faulted, never logged):
    ``GET/POST/DELETE /_sandbox/faults`` and ``GET/DELETE /_sandbox/requests``; subclasses
    add their own under ``/_sandbox/`` in :meth:`admin`.
    """

    name = "sandbox"

    def __init__(self) -> None:
        self.faults = Faults()
        self.request_log = RequestLog()
        # Guards the sandbox state; re-entrant so helpers can nest.
        self.lock = threading.RLock()

    # -- subclass hooks
    def api(self, req: Request) -> Response:
        raise NotImplementedError

    def admin(self, req: Request) -> Response | None:
        return None

    def error_body(self, err: SandboxError) -> Any:
        raise NotImplementedError

    # -- dispatch
    def error_response(self, err: SandboxError) -> Response:
        return Response(err.status, self.error_body(err), dict(err.headers))

    def handle(self, req: Request) -> Response | None:
        """The response to ``req``, or None to drop the connection without one."""
        if req.path.startswith(ADMIN_PREFIX):
            try:
                resp = self._common_admin(req) or self.admin(req)
                if resp is None:
                    raise SandboxError(404, "not_found", f"no admin endpoint {req.method} {req.path}")
                return resp
            except SandboxError as err:
                return self.error_response(err)
            except SandboxDataError as err:
                return self.error_response(SandboxError(400, "invalid_objects", str(err)))
        decision = self.faults.next()
        if decision.delay_s:
            time.sleep(decision.delay_s)
        if decision.kind == "disconnect":
            self.request_log.record(req, 0, "disconnect")
            return None
        if decision.kind == "rate_limit":
            headers = {}
            if decision.retry_after is not None:
                headers["Retry-After"] = format_retry_after(decision.retry_after)
            resp = self.error_response(
                SandboxError(429, "rate_limited", "Too many requests (sandbox fault); retry later", None, headers)
            )
        elif decision.kind == "server_error":
            resp = self.error_response(
                SandboxError(decision.status, "internal_error", "Internal server error (sandbox fault)")
            )
        else:
            try:
                resp = self.api(req)
            except SandboxError as err:
                resp = self.error_response(err)
            except Exception as exc:  # a sandbox bug must still answer like a server would
                log.exception("%s: unhandled error for %s %s", self.name, req.method, req.path)
                resp = self.error_response(SandboxError(500, "internal_error", f"sandbox bug: {exc!r}"))
        self.request_log.record(req, resp.status, decision.kind)
        return resp

    def _common_admin(self, req: Request) -> Response | None:
        if req.path == "/_sandbox/faults":
            if req.method == "GET":
                return Response(200, self.faults.snapshot())
            if req.method == "POST":
                self.faults.configure(req.json())
                return Response(200, self.faults.snapshot())
            if req.method == "DELETE":
                self.faults.clear()
                return Response(200, self.faults.snapshot())
            raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}")
        if req.path == "/_sandbox/requests":
            if req.method == "GET":
                return Response(200, {"requests": self.request_log.entries()})
            if req.method == "DELETE":
                self.request_log.clear()
                return Response(200, {"requests": []})
            raise SandboxError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}")
        return None


# --------------------------------------------------------------------------- HTTP server


def _handler_for(app: SandboxApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"finance-pipeline-{app.name}"
        sys_version = ""
        # Keep-alive, as Stripe's API does: a pull of thousands of pages reuses its connections
        # instead of paying a TCP handshake and a server thread per page. Every response has a
        # Content-Length; without TCP_NODELAY the body, written after the headers, would wait
        # out the client's delayed ACK (40 ms) on a reused connection.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = 60  # an idle kept-alive connection is closed after this many seconds

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(app.error_response(SandboxError(413, "too_large", "request body is too large")))
                return
            body = self.rfile.read(length) if length else b""
            req = Request(
                method=self.command,
                path=parts.path,
                query_string=parts.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            resp = app.handle(req)
            if resp is None:
                self.close_connection = True
                return
            self._send(resp)

        def _send(self, resp: Response) -> None:
            payload = (b"" if resp.body is None else bytes(resp.body) if isinstance(resp.body, EncodedJSON)
                       else json_bytes(resp.body))
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s: " + format, app.name, *args)

    return Handler


class SandboxServer:
    """Runs a :class:`SandboxApp` on a stdlib threaded HTTP server.

    ``port=0`` binds a free port; :attr:`url` is known after :meth:`start`.
    """

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("sandbox server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind and serve in a background thread; returns the base URL."""
        if self._httpd is not None:
            raise RuntimeError("sandbox server already started")
        httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self.app))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.app.name}-server", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- handles


class SandboxHandle:
    """A running sandbox plus a small admin client that talks to it over HTTP."""

    def __init__(self, server: SandboxServer, data_path: Path) -> None:
        self.server = server
        self.app = server.app
        self.url = server.url
        self.data_path = Path(data_path)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        # Plain urllib: admin calls are local http, and an httpx client costs ~40 ms of TLS setup.
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"{self.app.name} admin {method} {path} failed with HTTP {exc.code}: {detail}") from None

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the fault setting, e.g. ``set_faults(rate_limit=2, retry_after=1)``."""
        return self._call("POST", "/_sandbox/faults", faults)

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/_sandbox/faults")

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/faults")

    def requests(self) -> list[dict[str, Any]]:
        """API requests served so far: seq, method, path, query, params, status, fault."""
        return self._call("GET", "/_sandbox/requests")["requests"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/_sandbox/requests")

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_foreground(server: SandboxServer, announce: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (or SIGTERM), then stop cleanly."""
    import signal

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (e.g. from a process manager) ends the run as cleanly as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        announce(server.start())
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
