"""Shared helpers for the API tests: tokens for one actor per role, a clock, a served app."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from finance_pipeline.api.tokens import TokenStore


# Actor -> roles. ops:* operate, fin:* lead finance, sec:* are security engineers.
ACTORS = {
    "ops:ana": ["operator"],
    "ops:omar": ["operator"],
    "fin:lena": ["finance-lead"],
    "fin:max": ["finance-lead"],
    "sec:sam": ["security-engineer"],
    "root:rita": ["super-admin"],
    "aud:alex": ["auditor"],
    "system:import": ["service"],  # the pipeline's own importer: posts without review
}

def make_tokens(directory: Path) -> tuple[TokenStore, dict[str, str]]:
    """A tokens file with one token per actor of ACTORS; returns the store and actor -> token."""
    store = TokenStore(directory / "api_tokens.json")
    issued = {actor: store.add(actor, roles, now_us=0)[0] for actor, roles in ACTORS.items()}
    return store, issued

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

class Clock:
    """An injectable ``now`` in UTC microseconds."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
