"""The service part (systemd, doctor, provisioning): no tables or stages of its own."""

from __future__ import annotations

from agent.part import BasePart


class ServicePart(BasePart):
    name = "service"


PART = ServicePart()
