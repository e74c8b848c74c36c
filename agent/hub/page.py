"""``edge-agent hub serve``: the fleet page (``/``) and its JSON (``/api/fleet``), read-only.

One self-contained HTML page (no CDN: it works on a control-room network with no internet) that
fetches ``/api/fleet`` every 5 s and lists every unit, flagged ones first.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from agent.errors import AgentError

PAGE = Path(__file__).with_name("page") / "fleet.html"


def build_app(dsn: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from agent.hub import fleet
    from agent.hub.db import HubDB

    local = threading.local()

    def db() -> HubDB:
        if getattr(local, "db", None) is None:
            local.db = HubDB(dsn, migrate=False)
        return local.db

    app = FastAPI(title="edge-agent hub: fleet", docs_url=None, redoc_url=None)

    @app.get("/api/fleet")
    def api_fleet() -> dict[str, Any]:
        """Every unit (see agent/hub/fleet.py for the fields), the hub workers and the totals."""
        d = db()
        try:
            rows = fleet.units(d)
            return {"units": rows, "workers": fleet.workers(d), "totals": fleet.summary(rows)}
        except Exception:
            local.db = None  # a broken connection: open a new one next time
            d.close()
            raise

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE.read_text()

    return app


def serve(dsn: str, bind: str, port: int) -> None:
    import uvicorn

    try:  # a port in use is an error with a fix, not uvicorn's traceback
        with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
    except OSError as exc:
        raise AgentError(
            f"cannot listen on {bind}:{port}: {exc.strerror}", "choose another --port or --bind"
        ) from None
    print(f"fleet page on http://{bind}:{port}/", flush=True)
    uvicorn.run(build_app(dsn), host=bind, port=port, log_level="warning")
