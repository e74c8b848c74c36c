"""Local API settings (privacy settings: agent.privacy.config, re-exported here)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field

from agent.configbase import Section
from agent.privacy.config import PrivacyConfig  # noqa: F401  (re-export)

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost (the addresses that need no token)."""
    h = host.strip().strip("[]").lower()
    if h in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class ApiConfig(Section):
    enabled: bool = Field(True, description="Serve the local HTTP API and status page.")
    bind: str = Field(
        "127.0.0.1",
        description="Address to listen on. Any address other than loopback (127.0.0.1, ::1, localhost) "
        "requires the bearer token on every request: `Authorization: Bearer $(edge-agent token show)`.",
        examples=["0.0.0.0"],
    )
    port: int = Field(8754, ge=1, le=65535, description="TCP port.")
    token_file: Path | None = Field(
        None,
        description="The bearer token file (created 0600 on first run when missing). "
        "Default: $EDGE_AGENT_TOKEN_FILE or /var/lib/edge-agent/api-token.",
        examples=["/var/lib/edge-agent/api-token"],
    )
    require_token: bool = Field(
        False, description="Require the token even on loopback (always required off loopback)."
    )
    max_auth_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed token checks from one client address before it is "
        "refused (429) for a while, whatever it sends.",
    )
    auth_backoff_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="First refusal period after too many failures; "
        "it doubles with each further failure, up to auth_backoff_max_s.",
    )
    auth_backoff_max_s: float = Field(900.0, gt=0, le=86400, description="Longest refusal period.")
    snapshot_quality: int = Field(80, ge=20, le=95, description="JPEG quality of /api/snapshot images.")
    snapshot_workers: int = Field(
        2,
        ge=1,
        le=8,
        description="Snapshots encoded at the same time (more requests wait); "
        "keeps JPEG work from starving inference on a small board.",
    )
    page_refresh_s: float = Field(
        2.0, ge=0.5, le=600, description="How often the status page refreshes itself."
    )
