"""Recurrent SSD detectors (AutoML Video LSTM-SSD, e.g. ``traffic_lstm_vehicles``).

Besides the image the model takes its LSTM state (``raw_inputs/init_lstm_c``, ``init_lstm_h``) and
returns the next one (``raw_outputs/lstm_c``, ``lstm_h``). The state of frame *n* is fed to frame
*n+1*; it starts at zero (the real value 0, i.e. the zero point) and is kept per ``state_key``
(one camera each), so cameras sharing an engine do not mix their state. ``reset_state`` (or a
reopened source) starts again from zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters.ssd import SsdAdapter
from agent.inference.tensors import quant_params


def state_pairs(interpreter: Any) -> list[tuple[dict, dict]]:
    """Pairs ``(state input, state output)`` matched by name.

    An input named ``.../init_<x>`` (or ``init_<x>``) is fed from the output whose name ends with
    ``<x>`` (``raw_inputs/init_lstm_c`` <- ``raw_outputs/lstm_c``).

    Args:
        interpreter: an allocated interpreter.

    Returns:
        List of ``(input_detail, output_detail)``; empty for a non-recurrent model.
    """
    outs = interpreter.get_output_details()
    pairs = []
    for d in interpreter.get_input_details():
        base = d["name"].rsplit("/", 1)[-1]
        if not base.startswith("init_"):
            continue
        want = base[len("init_") :]
        match = [o for o in outs if o["name"].rsplit("/", 1)[-1] == want]
        if (
            len(match) == 1
            and list(match[0]["shape"]) == list(d["shape"])
            and match[0]["dtype"] == d["dtype"]
        ):
            pairs.append((d, match[0]))
    return pairs


class RecurrentSsdAdapter(SsdAdapter):
    """SSD postprocess outputs plus LSTM state carried from frame to frame per ``state_key``."""

    family = "recurrent"

    def __init__(self, interpreter: Any, **kw: Any) -> None:
        super().__init__(interpreter, **kw)
        self.pairs = state_pairs(interpreter)
        if not self.pairs:
            raise ModelError("no recurrent state inputs (init_*) matching outputs", "use family ssd")
        self._zero = [
            np.full(d["shape"], quant_params(d)[1] if d["dtype"] != np.float32 else 0, dtype=d["dtype"])
            for d, _ in self.pairs
        ]
        self._state: dict[str, list[np.ndarray]] = {}

    def state(self, state_key: str) -> list[np.ndarray] | None:
        """The state that will be fed on the next frame of ``state_key`` (``None``: zero state)."""
        return self._state.get(state_key)

    def set_state(self, state_key: str, values: list[np.ndarray]) -> None:
        """Set the state fed on the next frame of ``state_key`` (raw tensor values, one per pair).

        Args:
            state_key: the camera.
            values: arrays shaped and typed like the state inputs, in :attr:`pairs` order.
        """
        if len(values) != len(self.pairs):
            raise ModelError(
                f"expected {len(self.pairs)} state arrays, got {len(values)}",
                "pass one array per state input",
            )
        out = []
        for (d, _), v in zip(self.pairs, values):
            v = np.asarray(v)
            if list(v.shape) != list(d["shape"]) or v.dtype != d["dtype"]:
                raise ModelError(
                    f"state for {d['name']} must be {d['dtype'].__name__} {list(d['shape'])}, "
                    f"got {v.dtype} {list(v.shape)}",
                    "pass arrays like the model's state inputs",
                )
            out.append(v.copy())
        self._state[state_key] = out

    def before_invoke(self, state_key: str) -> None:
        st = self._state.get(state_key) or self._zero
        for (d, _), value in zip(self.pairs, st):
            self.interpreter.set_tensor(d["index"], value)

    def after_invoke(self, state_key: str) -> None:
        # get_tensor returns a copy, which is what must be kept
        self._state[state_key] = [self.interpreter.get_tensor(o["index"]) for _, o in self.pairs]

    def reset_state(self, state_key: str | None = None) -> None:
        if state_key is None:
            self._state.clear()
        else:
            self._state.pop(state_key, None)
