"""The privacy report as a doctor check: fails when a limit of [privacy.limits] is exceeded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.service.doctor_checks.base import Check, Context, Result, fail, ok, warn

if TYPE_CHECKING:
    from agent.config import AgentConfig


def privacy_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    return [Check("privacy", "privacy", lambda: check_privacy(cfg), ctx.timeout_s)]


def check_privacy(cfg: AgentConfig) -> Result:
    """The privacy report's findings: the failing ones (or warnings) named, with their fixes."""
    from agent.privacy.report import build_report

    rep = build_report(cfg)
    data = {"findings": rep["findings"], "oldest_raw": rep["retention"]["oldest_raw"]}
    bad = [f for f in rep["findings"] if f["status"] == "fail"]
    warns = [f for f in rep["findings"] if f["status"] == "warn"]
    if bad:
        return fail("; ".join(f["what"] for f in bad), "; ".join(f.get("fix", "") for f in bad), **data)
    if cfg.privacy.blur == "faces":
        from agent.privacy.faces import FaceFinder

        finder = FaceFinder.from_config(cfg)
        if not finder.load():
            warns.append(
                {
                    "status": "warn",
                    "what": f"{finder.why_not}: faces mode blurs whole people instead",
                    "fix": f"edge-agent models pull {cfg.privacy.face_model} (or set privacy.face_model)",
                }
            )
    if warns:
        return warn("; ".join(f["what"] for f in warns), "; ".join(f.get("fix", "") for f in warns), **data)
    ims = rep["images"]
    return ok(
        f"within limits: snapshots {'on, blur ' + ims['blur'] if ims['snapshots_served'] else 'off'}, "
        f"small counts {rep['leaves']['small_counts']['mode']}, "
        f"oldest raw row {(rep['retention']['oldest_raw'] or {}).get('ts') or 'none'}",
        **data,
    )
