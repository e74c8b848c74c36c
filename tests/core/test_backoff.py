"""agent.backoff: the one retry wait used by cameras, the broker link, sensors, NGSI-LD and the hub."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import EQUAL, FULL, Backoff, spread


def test_doubles_from_initial_up_to_the_cap():
    b = Backoff(1.0, 10.0, jitter=(1.0, 1.0))
    assert [b.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert b.failures == 7


def test_reset_starts_again_from_initial():
    b = Backoff(0.5, 8.0, jitter=(1.0, 1.0))
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.failures == 0 and b.next_delay() == 0.5 and b.next_delay() == 1.0


def test_factor_and_a_huge_failure_count_do_not_overflow():
    b = Backoff(1.0, 100.0, factor=3.0, jitter=(1.0, 1.0))
    assert [b.base(n) for n in range(6)] == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]
    assert b.base(10**9) == 100.0 and b.base(-3) == 1.0
    assert Backoff(2.0, 5.0, factor=1.0).base(10**6) == 2.0


@given(
    initial=st.floats(0.001, 100),
    ratio=st.floats(1, 1000),
    failures=st.integers(0, 10_000),
    jitter=st.sampled_from([EQUAL, FULL, spread(0.2), spread(0.25)]),
    seed=st.integers(0, 2**32),
)
def test_every_wait_lies_in_the_jitter_range_of_its_capped_base(initial, ratio, failures, jitter, seed):
    b = Backoff(initial, initial * ratio, jitter=jitter, seed=seed)
    base = b.base(failures)
    assert initial <= base <= initial * ratio
    assert base == pytest.approx(min(initial * ratio, initial * 2.0 ** min(failures, 64)))
    d = b.delay_for(failures)
    assert base * jitter[0] <= d <= base * jitter[1]


def test_jitter_spreads_the_waits_and_equal_full_never_exceed_the_cap():
    for jitter, lo, hi in ((EQUAL, 5.0, 10.0), (FULL, 0.0, 10.0), (spread(0.25), 7.5, 12.5)):
        b = Backoff(10.0, 10.0, jitter=jitter, seed=1)
        draws = [b.next_delay() for _ in range(2000)]
        assert lo <= min(draws) and max(draws) <= hi
        assert max(draws) - min(draws) > 0.8 * (hi - lo)  # really spread, not one value


def test_a_seed_repeats_the_draws_and_an_rng_is_used_as_given():
    a = Backoff(1.0, 60.0, jitter=FULL, seed=42)
    b = Backoff(1.0, 60.0, jitter=FULL, seed=42)
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]
    rng = random.Random(7)
    c = Backoff(1.0, 60.0, jitter=FULL, rng=rng)
    assert c.rng is rng and c.next_delay() == random.Random(7).uniform(0.0, 1.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"initial": 0.0, "maximum": 1.0},
        {"initial": 2.0, "maximum": 1.0},
        {"initial": 1.0, "maximum": 2.0, "factor": 0.5},
        {"initial": 1.0, "maximum": 2.0, "jitter": (1.2, 0.8)},
        {"initial": 1.0, "maximum": 2.0, "jitter": (-0.1, 1.0)},
    ],
)
def test_nonsense_is_refused(kw):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kw)


def test_wait_sleeps_the_next_delay_and_returns_early_on_stop():
    stop = threading.Event()
    b = Backoff(0.05, 0.05, jitter=(1.0, 1.0))
    t0 = time.monotonic()
    assert b.wait(stop) is False
    assert 0.04 <= time.monotonic() - t0 < 1.0 and b.failures == 1
    slow = Backoff(30.0, 30.0)
    threading.Timer(0.05, stop.set).start()
    t0 = time.monotonic()
    assert slow.wait(stop) is True and time.monotonic() - t0 < 5.0
