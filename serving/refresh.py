"""New registry data reaches a running service without a restart and without a gap.

A watcher thread looks at the registry every few seconds: a folder's files (name, size,
modification time), or a database's row counts and latest `recorded_time`. When they change,
and then hold still for one more look (a copy in progress is not read half-written), it
validates the new data and builds a complete new service state beside the old one: today's
features, the caseloads and last month's scores. Then one assignment swaps it in; a request
that started on the old state finishes on it. Data that fails validation leaves the old state
serving and says why in /readyz.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from features.store import Store
from serving.deps import Services
from serving.state import IndicatorSource, ServiceState, build_state


def rebuilt(old: ServiceState, lenient: bool) -> ServiceState:
    """A new state over the registry as it is now, with the models and programme inputs the
    old one serves."""
    store = Store(old.store.source, lenient=lenient)
    source = old.indicators
    indicators = (
        IndicatorSource(store, source.config, source.population, source.external)
        if source is not None
        else None
    )
    return build_state(store, old.loaded, indicators, rising=old.rising)


class DataWatcher:
    def __init__(
        self,
        svc: Services,
        interval_s: float,
        lenient: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        self.svc = svc
        self.interval_s = interval_s
        self.lenient = lenient
        self.say = say
        self._stop = threading.Event()
        self._seen = svc.state.store.stamp()
        self._thread = threading.Thread(target=self._run, name="data-watcher", daemon=True)

    def start(self) -> DataWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _look(self) -> tuple | None:
        """The registry's stamp now; None while it cannot be read (a database restarting),
        which is no change: the old state goes on serving until the registry answers."""
        try:
            return self.svc.state.store.stamp()
        except Exception:  # noqa: BLE001 - an unreachable registry must not end the watcher
            return None

    def _run(self) -> None:
        pending: tuple | None = None
        while not self._stop.wait(self.interval_s):
            now = self._look()
            if now is None or now == self._seen:
                pending = None
            elif now != pending:
                pending = now  # changed: wait one more look for it to hold still
            else:
                self._refresh(now)
                pending = None

    def _refresh(self, now: tuple) -> None:
        old = self.svc.state
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            new = rebuilt(old, self.lenient)
        except Exception as exc:  # bad data or a failed read: keep serving what we have
            old.degraded = (
                f"data refresh failed at {when}: {exc}; still serving the registry as of "
                f"{old.as_of}"
            )
            self.say(old.degraded)
            self._seen = now  # the same files are not retried; the next change is
            return
        new.loaded = self.svc.state.loaded  # a reload during the build is not undone
        new.refresh_caseloads()
        self.svc.state = new
        self._seen = now
        self.say(f"registry refreshed at {when}: reference date {new.as_of}")
