"""One live recording (tests/contract/live.py) shared by the contract and NGSI-LD tests."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.contract.live import record


@pytest.fixture(scope="session")
def recording(tmp_path_factory, mirror):
    """(messages, database, config) of a live agent with every part on."""
    msgs, db, cfg = record(tmp_path_factory.mktemp("contract"), mirror / "media" / "4ku_traffic.mp4", mirror)
    out = ROOT / "test-artifacts" / "contract"
    out.mkdir(parents=True, exist_ok=True)
    (out / "recording.json").write_text(json.dumps(msgs, indent=1) + "\n")  # scripts/mqtt_docs.py --from
    return msgs, db, cfg
