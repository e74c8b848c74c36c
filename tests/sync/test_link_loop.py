"""The link's own network loop (issue #15): paho's queued packets written in one go."""

from __future__ import annotations

from collections import deque

import paho.mqtt.client as paho

from agent.sync.mqtt import coalesce


def _pkt(command: int, data: bytes, qos: int = 1, pos: int = 0) -> dict:
    return {
        "command": command,
        "mid": 1,
        "qos": qos,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": bytearray(data),
        "info": None,
    }


def test_paho_out_packet_has_the_shape_coalesce_relies_on():
    # a paho whose queue looks different would only lose the merging (coalesce leaves it alone)
    from agent.sync.mqtt import _defer_write

    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.on_socket_register_write = _defer_write  # as the link sets it: queued, not written at once
    c._packet_queue(0x32, bytearray(b"xy"), 1, 1)
    assert isinstance(c._out_packet, deque) and len(c._out_packet) == 1
    assert {"command", "qos", "pos", "to_process", "packet"} <= set(c._out_packet[0])


def test_queued_publishes_are_merged_but_qos0_and_disconnect_keep_their_own_write():
    q = deque(
        [
            _pkt(0x32, b"abcd", pos=2),  # half written: left as it is
            _pkt(0x32, b"P1"),
            _pkt(0x32, b"P2"),
            _pkt(0x40, b"A"),  # a PUBACK (of a command received)
            _pkt(0x30, b"Q0", qos=0),  # QoS 0: paho calls on_publish once it is written
            _pkt(0x32, b"P3"),
            _pkt(0xE0, b"D"),  # DISCONNECT: paho closes the socket once it is written
        ]
    )
    coalesce(q)
    got = [(bytes(p["packet"]), p["pos"], p["to_process"], p["command"]) for p in q]
    assert got == [
        (b"abcd", 2, 2, 0x32),
        (b"P1P2A", 0, 5, 0x32),
        (b"Q0", 0, 2, 0x30),
        (b"P3", 0, 2, 0x32),
        (b"D", 0, 1, 0xE0),
    ]


def test_a_queue_of_another_shape_is_left_alone():
    q = deque([{"data": b"x"}, {"data": b"y"}])
    coalesce(q)
    assert list(q) == [{"data": b"x"}, {"data": b"y"}]
