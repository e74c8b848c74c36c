"""The TOML writer round-trips through tomllib."""

from __future__ import annotations

import math
from pathlib import PurePosixPath

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.service.tomlwrite import dumps, value

keys = st.text(min_size=1, max_size=12)
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
inline = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=3), max_leaves=8
)


def tables(depth: int):
    base = st.dictionaries(keys, inline, max_size=4)
    if depth == 0:
        return base
    sub = tables(depth - 1)
    return st.tuples(
        base,
        st.dictionaries(keys, sub, max_size=2),
        st.dictionaries(keys, st.lists(sub, min_size=1, max_size=2), max_size=2),
    ).map(
        lambda t: {
            **t[0],
            **{k: v for k, v in t[1].items() if k not in t[0]},
            **{k: v for k, v in t[2].items() if k not in t[0] and k not in t[1]},
        }
    )


@settings(max_examples=150, deadline=None)
@given(tables(2))
def test_round_trip(doc):
    assert tomllib.loads(dumps(doc)) == doc


def test_config_shapes():
    doc = {
        "device": {"site": 'main "st"\\5th', "id": "rsu-1"},
        "cameras": [
            {
                "name": "north",
                "source": "/dev/video0",
                "analytics": {
                    "lines": [{"name": "stop", "points": [[0, 400], [1280, 400]]}],
                    "zones": [{"name": "box", "polygon": [[0, 0], [10, 0], [10, 10]]}],
                },
            },
            {"name": "east", "source": "rtsp://x/y", "detect_fps": 2.5, "analytics": {}},
        ],
        "inference": {"delegate_options": {"cache dir": "/tmp", "n": 1}, "labels_keep": []},
        "odd key.with dot": {"tab\there": "ctl\x01\x7f", "nl": "a\nb"},
        "none_is_left_out": None,
    }
    text = dumps(doc, comment="written by a test\nsecond line")
    assert text.startswith("# written by a test\n# second line\n")
    back = tomllib.loads(text)
    expected = {k: v for k, v in doc.items() if v is not None}
    assert back == expected
    assert "[[cameras.analytics.lines]]" in text


def test_values():
    assert value(float("inf")) == "inf" and value(float("-inf")) == "-inf"
    assert math.isnan(tomllib.loads("v = " + value(float("nan")))["v"])
    assert value(PurePosixPath("/etc/x")) == '"/etc/x"'
    assert value(1e20) == "1e+20" and tomllib.loads("v = 1e+20")["v"] == 1e20
    assert value(3.0) == "3.0"
    with pytest.raises(TypeError):
        value(object())
    with pytest.raises(TypeError):
        value([1, None])
