"""Who may use the API: bearer token off loopback, back-off after failures, read-only, no CORS.

Rules (ASGI middleware, applied before any route):

- Only GET and HEAD exist (405 otherwise, OPTIONS included: no CORS preflight is ever answered).
- Bound to loopback (127.0.0.1, ::1, localhost) and ``api.require_token`` off: no token, but the
  ``Host`` header must name a loopback host, so a web page elsewhere cannot reach the API through
  DNS rebinding.
- Bound anywhere else: every request needs ``Authorization: Bearer <token>``, compared in constant
  time. The one exception is ``/`` (the status page's static shell, which holds no data; it asks
  for the token and sends it with each call).
- A client address with ``max_auth_failures`` failed checks is refused (429 + Retry-After) for
  ``auth_backoff_s``, doubling per further failure up to ``auth_backoff_max_s``, *whatever* it
  sends, the right token included. Success clears its record.

The token lives in a file (``agent.api.token``); a rotated file is re-read on the next request
(its mtime changes), so ``edge-agent token rotate`` takes effect without a restart.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from agent.api.config import ApiConfig, is_loopback

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/"})
_MAX_TRACKED = 4096


class TokenFile:
    """The current token, re-read when the file changes (rotation)."""

    def __init__(self, path: Path) -> None:
        from agent.api import token as tokens

        self.path = path
        self._tokens = tokens
        self._token = tokens.load_or_create(path).encode()
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_ino)
        except OSError:
            return None

    def current(self) -> bytes:
        stamp = self._stat()
        if stamp != self._stamp and stamp is not None:
            with self._lock:
                try:
                    self._token = self._tokens.read(self.path).encode()
                    self._stamp = stamp
                    log.info("API token file %s changed: new token in use", self.path)
                except Exception as exc:  # keep the last good token; say why
                    log.error("API token file %s unreadable, keeping the previous token: %s", self.path, exc)
        return self._token

    def matches(self, presented: bytes) -> bool:
        return hmac.compare_digest(presented, self.current())


class Backoff:
    """Failed attempts per client address, and the refusal period they earn."""

    def __init__(self, max_failures: int, initial_s: float, max_s: float, clock=time.monotonic) -> None:
        self.max_failures = max_failures
        self.initial_s = initial_s
        self.max_s = max_s
        self.clock = clock
        self._fails: dict[str, tuple[int, float]] = {}  # addr -> (failures, blocked_until)
        self._lock = threading.Lock()
        self.total_failures = 0
        self.total_refused = 0

    def blocked_for(self, addr: str) -> float:
        with self._lock:
            n, until = self._fails.get(addr, (0, 0.0))
            left = until - self.clock()
            return left if left > 0 else 0.0

    def refused(self) -> None:
        with self._lock:
            self.total_refused += 1

    def failure(self, addr: str) -> float:
        """Record a failure; returns the refusal period now in force (0: not yet blocked)."""
        with self._lock:
            self.total_failures += 1
            n, until = self._fails.get(addr, (0, 0.0))
            n += 1
            if n >= self.max_failures:
                period = min(self.max_s, self.initial_s * 2 ** (n - self.max_failures))
                until = self.clock() + period
            if len(self._fails) >= _MAX_TRACKED and addr not in self._fails:  # bounded memory
                oldest = min(self._fails, key=lambda a: self._fails[a][1])
                del self._fails[oldest]
            self._fails[addr] = (n, until)
            left = until - self.clock()
            return left if left > 0 else 0.0

    def success(self, addr: str) -> None:
        with self._lock:
            self._fails.pop(addr, None)


def _host_only(host_header: str) -> str:
    h = host_header.strip()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class AccessMiddleware:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(self, app: Any, cfg: ApiConfig, token_file: TokenFile | None, backoff: Backoff) -> None:
        self.app = app
        self.cfg = cfg
        self.token_file = token_file
        self.backoff = backoff
        self.loopback = is_loopback(cfg.bind)
        self.need_token = (not self.loopback) or cfg.require_token
        if self.need_token and token_file is None:
            raise ValueError("a token file is needed when the API is not bound to loopback")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        method = scope["method"]
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if method not in ("GET", "HEAD"):
            await _reply(send, 405, "read-only API: only GET and HEAD", {"allow": "GET, HEAD"})
            return
        if self.loopback and not self._host_ok(headers.get("host", b"").decode("latin-1")):
            await _reply(
                send, 421, "Host header must name this unit's loopback address (localhost or 127.0.0.1)"
            )
            return
        if not self.need_token or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        addr = (scope.get("client") or ("?", 0))[0]
        wait = self.backoff.blocked_for(addr)
        if wait > 0:
            self.backoff.refused()
            await _reply(
                send,
                429,
                f"too many failed token checks from {addr}: wait {math.ceil(wait)} s",
                {"retry-after": str(math.ceil(wait))},
            )
            return
        presented = _bearer(headers.get("authorization", b""))
        if presented is not None and self.token_file is not None and self.token_file.matches(presented):
            self.backoff.success(addr)
            await self.app(scope, receive, send)
            return
        wait = self.backoff.failure(addr)
        why = "missing bearer token" if presented is None else "wrong token"
        log.warning("API: %s from %s for %s", why, addr, path)
        extra = {"www-authenticate": 'Bearer realm="edge-agent"'}
        if wait > 0:
            extra["retry-after"] = str(math.ceil(wait))
        await _reply(
            send,
            401,
            f"{why}: send 'Authorization: Bearer TOKEN' (on the unit: edge-agent token show)",
            extra,
        )

    def _host_ok(self, host: str) -> bool:
        return bool(host) and is_loopback(_host_only(host))


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'",
    ),
]


def _with_headers(send: Any) -> Any:
    """Add the security headers (no caching, no framing, no outside resources) to every response."""

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message = dict(message)
            message["headers"] = list(message.get("headers", [])) + [
                h for h in _SECURITY_HEADERS if h[0] not in names
            ]
        await send(message)

    return wrapped


def _bearer(value: bytes) -> bytes | None:
    parts = value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != b"bearer" or not parts[1].strip():
        return None
    return parts[1].strip()


async def _reply(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in (extra or {}).items():
        headers.append((k.encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
