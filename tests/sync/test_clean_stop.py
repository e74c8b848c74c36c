"""A clean stop against a real mosquitto logs no error (issue #16, item 5)."""

from __future__ import annotations

import logging

from tests.sync.conftest import agent_config


def test_a_clean_stop_logs_no_error(tmp_path, broker, agents, caplog):
    caplog.set_level(logging.DEBUG)
    a = agents(agent_config(tmp_path, broker, mqtt={"health_interval_s": 0.5})).start()
    assert a.svc.link.connected.wait(10)
    assert a.svc.publisher.drain(__import__("time").monotonic() + 10)
    a.stop(5.0)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, [(r.name, r.getMessage()) for r in bad]


def test_paho_loop_after_disconnect_is_not_an_error(caplog):
    """paho logs "Client is not connected" at ERROR when its loop runs once more after the socket is
    closed (the race behind the false error at a clean stop): the agent's paho logger demotes it."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.sync import mqtt  # noqa: F401 - installs the filter on its paho logger

    caplog.set_level(logging.DEBUG)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="x")
    c.enable_logger(logging.getLogger("agent.sync.paho"))
    c._loop(0.0)  # what paho's thread does after disconnect() closed the socket
    recs = [r for r in caplog.records if "not connected" in r.getMessage()]
    assert recs and all(r.levelno == logging.DEBUG for r in recs), [
        (r.levelname, r.getMessage()) for r in recs
    ]
