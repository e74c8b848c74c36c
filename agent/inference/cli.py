"""Commands: ``edge-agent models list|pull|verify``, ``edge-agent detect``, ``edge-agent classify``.

``commands`` is what ``agent.cli`` adds to ``edge-agent``. The ``models`` group is in
:mod:`agent.inference.models_cli`, ``detect`` and ``classify`` in :mod:`agent.inference.detect_cli`
(their frame reading and annotated output in :mod:`agent.inference.frames_cli`), the options they
share in :mod:`agent.inference.options_cli`. Heavy modules (OpenCV, LiteRT) are imported inside the
commands so ``edge-agent --help`` stays fast.
"""

from __future__ import annotations

from agent.inference.detect_cli import DEFAULT_CLASSIFIER, classify_cmd, detect_cmd
from agent.inference.models_cli import models_group

__all__ = ["DEFAULT_CLASSIFIER", "classify_cmd", "commands", "detect_cmd", "models_group"]

commands = [models_group, detect_cmd, classify_cmd]
