"""How many requests one worker takes in hand at once, and when it sheds the rest.

A fixed count cannot both take a normal day's bursts and keep answers prompt under overload.
At four times the load one worker can serve, a bound of 2 held the answers' p99 within about
2x the unloaded one but shed a sixth of the requests arriving at random at half capacity,
since they overlap; a bound of 8 shed none of those but let the p99 grow 4-6x under overload
(benchmarks/overload_bench.py). What tells a burst from overload is how much of the time work
stands in hand. Measured in tenths of a second on one worker: at half capacity, about half of
it (0.4-0.6, now and then 0.9); at four times the load, 0.9-1.0 under a bound of 8 and 0.8-0.9
under a bound of 2 (the clients' own turnaround leaves gaps).

So the bound falls to `least` when more is asked at once than `most` (random arrivals at half
capacity never came near 8 in hand), or after two intervals in a row with work in hand for at
least ENTER of the time; it rises back to `most` after two in a row below STAY (with one, the
odd quiet interval under overload let answers through at 8 in hand often enough to set the
p99). One long request in hand (a large POST /v1/score) looks like saturation too, which
still leaves it `least - 1` companions. The state changes on the event loop only, so it needs
no lock.
"""

from __future__ import annotations

from dataclasses import dataclass

INTERVAL_S = 0.1  # the time over which the share with work in hand is judged
ENTER = 0.95  # two intervals in a row at least this busy lower the bound
STAY = 0.7  # two intervals in a row less busy than this raise it back
MOST = 8  # the bound while the worker has idle time: takes a normal day's bursts
LEAST = 2  # the bound under saturation: at 4x the load, the p99 within 3x the unloaded one


@dataclass(frozen=True)
class Bound:
    """`sunshine serve --max-in-flight MOST --min-in-flight LEAST`; MOST 0: no bound at all
    (nothing shed; the throughput benchmarks' servers)."""

    most: int = MOST
    least: int = LEAST


DEFAULT = Bound()


class Admission:
    """The bound of requests in hand: `most` while the worker has idle time, `least` (at most
    `most`) once it is saturated."""

    def __init__(self, bound: Bound, interval: float = INTERVAL_S) -> None:
        self.most = bound.most or None
        self.least = bound.least if self.most is None else min(bound.least, self.most)
        self.interval = interval
        self.in_flight = 0
        self.saturated = False
        self._run = 0  # intervals in a row that speak for changing `saturated`
        self._start: float | None = None  # the current interval's start
        self._busy = 0.0  # seconds of the current interval with work in hand, until _since
        self._since = 0.0  # when work in hand last began, or the interval's start

    @property
    def bound(self) -> int | None:
        """How many requests may be in hand now; None: any number."""
        if self.most is None:
            return None
        return self.least if self.saturated else self.most

    def admit(self, now: float) -> bool:
        """Take a request in hand at `now` (monotonic seconds), unless the bound is reached."""
        self._roll(now)
        bound = self.bound
        if bound is not None and self.in_flight >= bound:
            if not self.saturated:  # more asked at once than a burst brings: overload
                self.saturated, self._run = True, 0
            return False
        if self.in_flight == 0:
            self._since = now
        self.in_flight += 1
        return True

    def release(self, now: float) -> None:
        """A request taken in hand has been answered (or abandoned) at `now`."""
        self._roll(now)
        self.in_flight -= 1
        if self.in_flight == 0:
            self._busy += now - self._since

    def _roll(self, now: float) -> None:
        """Judge the interval that ended before `now`, and the whole ones since, in which
        nothing came or went (busy throughout if work was in hand, else idle)."""
        if self._start is None:
            self._start = self._since = now
            return
        end = self._start + self.interval
        if now < end:
            return
        self._judge((self._busy + (end - self._since if self.in_flight else 0.0)) / self.interval)
        quiet = min(int((now - end) / self.interval), 2)  # two in a row decide
        for _ in range(quiet):
            self._judge(1.0 if self.in_flight else 0.0)
        self._start = now
        self._busy = 0.0
        self._since = now

    def _judge(self, share: float) -> None:
        """One interval busy `share` of the time: two in a row on the side that changes the
        state change it."""
        changes = share < STAY if self.saturated else share >= ENTER
        self._run = self._run + 1 if changes else 0
        if self._run >= 2:
            self.saturated, self._run = not self.saturated, 0
