"""Host commands to the MCU: send, wait for the ack or nack with the same sequence number,
resend after a timeout (same seq, so the MCU can tell a resend from a new command), give up
after the configured retries. Thread-safe: any thread may call :meth:`CommandClient.request`
while the sensor thread delivers answers with :meth:`CommandClient.on_message`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge import protocol as p
from firmware_bridge.events import Message


@dataclass
class CommandResult:
    command: str
    seq: int
    status: str  # "ack", "nack" or "timeout" (or "error": the port was closed)
    attempts: int
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ack"

    def to_dict(self) -> dict[str, Any]:
        d = {"command": self.command, "seq": self.seq, "status": self.status, "attempts": self.attempts}
        if self.reason:
            d["reason"] = self.reason
        return d


class CommandClient:
    def __init__(self, send: Callable[[bytes], None], *, timeout_s: float = 0.5, retries: int = 3) -> None:
        self._send = send
        self.timeout_s = timeout_s
        self.retries = retries
        self._seq = 0
        self._lock = threading.Lock()  # one command in flight at a time
        self._cond = threading.Condition()
        self._answers: dict[int, Message] = {}
        self._waiting: set[int] = set()
        self.stats = {"sent": 0, "resent": 0, "acked": 0, "nacked": 0, "timeouts": 0}

    def request(self, command: str, **fields: Any) -> CommandResult:
        """Send ``command`` (set_interval, set_relay, reboot, request_hello) and wait for the answer."""
        t = p.TYPE_CODES[command]
        if t not in p.COMMANDS:
            raise ValueError(f"{command} is not a host command")
        payload = p.encode_payload(t, fields)
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            data = b"\x00" + p.wire(t, seq, payload)  # leading 0x00 ends any partial frame at the MCU
            with self._cond:
                self._waiting.add(seq)
            try:
                for attempt in range(1, self.retries + 2):
                    try:
                        self._send(data)
                    except Exception as exc:  # the port went away: report, do not raise into the caller
                        return CommandResult(command, seq, "error", attempt, str(exc))
                    self.stats["sent" if attempt == 1 else "resent"] += 1
                    with self._cond:
                        self._cond.wait_for(lambda: seq in self._answers, timeout=self.timeout_s)
                        msg = self._answers.pop(seq, None)
                    if msg is not None:
                        if msg.kind == "ack":
                            self.stats["acked"] += 1
                            return CommandResult(command, seq, "ack", attempt)
                        self.stats["nacked"] += 1
                        return CommandResult(command, seq, "nack", attempt, msg.fields.get("reason"))
                self.stats["timeouts"] += 1
                return CommandResult(command, seq, "timeout", self.retries + 1)
            finally:
                with self._cond:
                    self._waiting.discard(seq)
                    self._answers.pop(seq, None)

    def on_message(self, msg: Message) -> None:
        """Deliver an ack/nack from the line (other messages are ignored)."""
        if msg.kind not in ("ack", "nack"):
            return
        seq = msg.fields.get("ack_seq")
        with self._cond:
            if seq in self._waiting:
                self._answers[seq] = msg
                self._cond.notify_all()
