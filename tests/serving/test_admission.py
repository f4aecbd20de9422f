"""The bound of requests in hand, on a clock the test holds (intervals of one second, so the
times are exact): `most` while the worker has idle time, LEAST after two intervals in a row at
least ENTER busy, `most` again after two in a row below STAY."""

from __future__ import annotations

import pytest

from serving.api.admission import ENTER, LEAST, STAY, Admission, Bound


def admission(most: int = 8) -> Admission:
    return Admission(Bound(most), interval=1.0)


def busy_interval(a: Admission, start: int, share: float) -> None:
    """The interval from `start` with one request in hand for its first `share`, then idle."""
    assert a.admit(start)
    a.release(start + share)


def test_a_burst_with_idle_time_is_taken_up_to_most():
    a = admission()
    assert all(a.admit(0.01 * k) for k in range(8))  # eight at once: a burst
    assert a.in_flight == 8
    for k in range(8):
        a.release(0.1 + 0.01 * k)
    # idle from 0.17 to 1: busy 17% of the first interval, so the next keeps 8
    assert all(a.admit(1.0 + 0.01 * k) for k in range(8))
    assert not a.saturated and a.bound == 8


def test_two_busy_intervals_lower_the_bound_and_two_with_idle_time_raise_it():
    assert ENTER == 0.95 and STAY == 0.7 and LEAST == 2
    a = admission()
    busy_interval(a, 0, 0.96)
    busy_interval(a, 1, 0.96)  # the first judged: 96% busy, one of two
    assert not a.saturated and a.bound == 8
    busy_interval(a, 2, 0.5)  # the second judged: two in a row, saturated
    assert a.saturated and a.bound == 2
    assert a.admit(2.6) and a.admit(2.61)  # two in hand
    assert not a.admit(2.62)  # a third is shed
    a.release(2.65)
    a.release(2.65)
    # the interval from 2 was busy 55% of the time, below STAY: one of two
    busy_interval(a, 3, 0.5)
    assert a.saturated
    assert a.admit(4) and not a.saturated and a.bound == 8  # the second: the bound rises
    assert all(a.admit(4.01) for _ in range(7))


def test_while_saturated_a_busy_share_above_stay_keeps_the_bound_low():
    a = admission()
    # saturated, then below STAY, at least STAY, below STAY: never two in a row below it
    for k, share in enumerate([0.96, 0.96, 0.6, 0.71, 0.6, 0.8]):
        busy_interval(a, k, share)
        assert a.saturated == (k >= 2), k
    assert a.admit(6) and a.saturated


def test_more_asked_than_most_lowers_the_bound_at_once():
    a = admission(4)
    assert all(a.admit(0.0) for _ in range(4))
    assert not a.saturated
    assert not a.admit(0.1)  # more asked at once than `most`: overload has begun
    assert a.saturated and a.bound == LEAST
    for _ in range(4):
        a.release(0.2)
    assert a.admit(0.3) and a.admit(0.3) and not a.admit(0.3)
    a.release(0.4)
    a.release(0.4)
    # two intervals below STAY raise it back, though the second shed at the low bound: sheds
    # while the bound is low are no evidence of overload
    assert a.admit(1.0) and a.saturated  # the first judged: busy 30% of it
    assert a.admit(1.0) and not a.admit(1.1)
    a.release(1.4)
    a.release(1.4)
    a.admit(2.0)  # the second: busy 40%
    assert not a.saturated and a.bound == 4


def test_one_busy_interval_between_idle_ones_is_a_burst():
    a = admission()
    for k, share in enumerate([1.0, 0.5, 1.0, 0.5, 0.94, 0.94]):
        busy_interval(a, k, share)
        assert not a.saturated, k
    a.admit(6)
    assert not a.saturated  # 0.94 is under ENTER


def test_quiet_intervals_count_as_idle_or_busy_as_what_was_in_hand():
    a = admission()
    for k in range(3):
        busy_interval(a, k, 1.0)
    assert a.saturated
    # nothing for ten intervals with nothing in hand: idle ones, which raise the bound
    assert a.admit(13) and not a.saturated and a.bound == 8
    # one request in hand for ten intervals with nothing else coming: busy ones
    assert a.admit(23.5) and a.saturated


@pytest.mark.parametrize("most", [1, 2])
def test_a_bound_at_or_below_least_is_fixed(most):
    a = admission(most)
    assert a.least == most
    assert [a.admit(0.0) for _ in range(most + 1)] == [True] * most + [False]
    assert a.admit(1.5) is False and a.bound == most


def test_no_bound_takes_everything():
    a = admission(0)
    assert all(a.admit(0.0001 * k) for k in range(10_000))
    assert a.bound is None and a.in_flight == 10_000
