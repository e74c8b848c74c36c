"""The local API server: uvicorn in a thread of its own, beside the pipeline.

``ApiServer(cfg, pipeline).start()`` binds the socket in the caller's thread (so a port in use is an
:class:`AgentError` at start, with the fix) and serves from a daemon thread with its own event loop.
uvicorn's signal handling is switched off: the agent's SIGINT/SIGTERM handling stays in charge and
calls :meth:`stop`. Nothing here runs on a pipeline thread except one histogram observation per
inferred frame (:func:`agent.api.metrics.attach_observer`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from agent.api.auth import AccessMiddleware, Backoff, TokenFile
from agent.api.config import is_loopback
from agent.api.metrics import Metrics, attach_observer
from agent.api.routes import PAGE, build_app
from agent.api.snapshot import SnapshotRenderer
from agent.api.status import live_status
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.api.host import ApiHost
    from agent.config import AgentConfig

log = logging.getLogger(__name__)


class _ThreadServer(uvicorn.Server):
    """uvicorn without signal handlers (the agent owns SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self):  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


class ApiServer:
    def __init__(self, cfg: AgentConfig, pipeline: ApiHost) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        api = cfg.api
        self.need_token = (not is_loopback(api.bind)) or api.require_token
        self.token_file: TokenFile | None = None
        if self.need_token:
            from agent.api import token as tokens

            path = Path(api.token_file) if api.token_file else tokens.default_path()
            try:
                self.token_file = TokenFile(path)
            except AgentError:
                raise
            except OSError as exc:
                raise AgentError(
                    f"cannot create the API token file {path}: {exc.strerror or exc}",
                    "set api.token_file to a writable path, or bind the API to 127.0.0.1",
                ) from None
        self.backoff = Backoff(api.max_auth_failures, api.auth_backoff_s, api.auth_backoff_max_s)
        from agent.privacy.faces import shared_finder

        self.snapshots = SnapshotRenderer(api.snapshot_workers, faces=shared_finder(cfg))
        self.metrics = Metrics(lambda: live_status(pipeline), self._api_counters)
        self.page_html = PAGE.read_text(encoding="utf-8")
        self.port = api.port
        self.app = AccessMiddleware(build_app(self), api, self.token_file, self.backoff)
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None
        self._detach = lambda: None

    def _api_counters(self) -> dict[str, tuple[str, str, float]]:
        return {
            "edge_agent_api_auth_failures": (
                "counter",
                "Failed token checks",
                float(self.backoff.total_failures),
            ),
            "edge_agent_api_auth_refused": (
                "counter",
                "Requests refused during back-off",
                float(self.backoff.total_refused),
            ),
            "edge_agent_api_snapshots_encoded": (
                "counter",
                "Snapshot JPEG encodes",
                float(self.snapshots.encoded),
            ),
        }

    def _bind(self) -> socket.socket:
        host, port = self.cfg.api.bind, self.cfg.api.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise AgentError(
                f"API bind address {host!r} cannot be resolved: {exc}",
                "set api.bind to an IP address such as 127.0.0.1",
            ) from None
        fam, _, _, _, addr = infos[0]
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            raise AgentError(
                f"the local API cannot listen on {host}:{port}: {exc.strerror}",
                "another program (or another agent) uses that port: stop it or change api.port",
            ) from None
        sock.listen(64)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        return sock

    def start(self) -> ApiServer:
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=True,
            proxy_headers=False,
            timeout_keep_alive=5,
            limit_concurrency=64,
            ws="none",
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise AgentError("the local API did not start within 10 s", "see the log above for the reason")
        self._detach = attach_observer(self.pipeline.results, self.metrics.observe)
        where = f"http://{'[' + self.cfg.api.bind + ']' if ':' in self.cfg.api.bind else self.cfg.api.bind}:{self.port}/"
        log.info(
            "local API and status page on %s (%s)",
            where,
            "bearer token required" if self.need_token else "loopback only, no token",
        )
        return self

    def _serve(self, sock: socket.socket) -> None:
        server = self._server
        assert server is not None  # made by start() before this thread
        try:
            server.run(sockets=[sock])
        except BaseException:  # noqa: BLE001 - never take the agent down
            log.exception("local API server stopped with an error")
        finally:
            sock.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._detach()
        server = self._server
        if server is not None:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive() and server is not None:
                server.force_exit = True
                self._thread.join(1.0)
