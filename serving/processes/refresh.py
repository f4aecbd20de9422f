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
from pathlib import Path
from typing import Self

from features.storage.postgres import DatabaseRegistry
from features.storage.store import Store, file_stamp, stamp_of
from serving.api.deps import Services
from serving.state.champions import Loaded
from serving.state.indicator_source import indicator_source
from serving.state.materialize import FAILED, current
from serving.state.service import ServiceState, build_state


def rebuilt(old: ServiceState, lenient: bool) -> ServiceState:
    """A new state over the registry as it is now, with the models and programme settings
    the old one serves, and the external indicators read again (a month the registry now
    reaches may have its figures there by now)."""
    store = Store(old.store.source, lenient=lenient)
    source = old.indicators
    indicators = (
        indicator_source(store, source.config, source.population, source.external_path)
        if source is not None
        else None
    )
    return build_state(store, old.loaded, indicators, rising=old.rising)


class Poller:
    """A daemon thread that calls `tick` every `interval_s` until stopped."""

    name = "poller"

    def __init__(self, interval_s: float, say: Callable[[str], None]) -> None:
        self.interval_s = interval_s
        self.say = say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError


class DataWatcher(Poller):
    """Looks at the registry (and the `inputs` files beside it, such as the external
    indicators) every `interval_s`; when they have changed and held still for one more look,
    calls `renew` (which says what it did); when that fails, `fail` with why."""

    name = "data-watcher"

    def __init__(
        self,
        source: Path | DatabaseRegistry,
        interval_s: float,
        renew: Callable[[], str],
        fail: Callable[[str], None],
        say: Callable[[str], None] = print,
        inputs: tuple[Path, ...] = (),
    ) -> None:
        super().__init__(interval_s, say)
        self.source = source
        self.inputs = inputs
        self.renew = renew
        self.fail = fail
        self._seen = self._look()
        self._pending: tuple | None = None

    def _look(self) -> tuple | None:
        """The registry's and the inputs' stamp now; None while the registry cannot be read
        (a database restarting), which is no change: the old state goes on serving until the
        registry answers."""
        try:
            registry = stamp_of(self.source)
        except Exception:  # noqa: BLE001 - an unreachable registry must not end the watcher
            return None
        files = []
        for path in self.inputs:
            try:
                files.append(file_stamp(path))
            except OSError:
                files.append((path.name, "missing"))  # renewing says so, naming the file
        return (registry, tuple(files))

    def tick(self) -> None:
        now = self._look()
        if now is None or now == self._seen:
            self._pending = None
        elif now != self._pending:
            self._pending = now  # changed: wait one more look for it to hold still
        else:
            self._seen = now  # the same data is not retried on failure; the next change is
            self._pending = None
            when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            try:
                self.say(f"registry refreshed at {when}: {self.renew()}")
            except Exception as exc:  # bad data or a failed read: keep serving what we have
                reason = f"data refresh failed at {when}: {exc}"
                self.fail(reason)
                self.say(reason)


def watch_in_place(
    svc: Services, interval_s: float, lenient: bool, say: Callable[[str], None] = print
) -> DataWatcher:
    """One process's watcher: it builds a complete new state beside the old one, then swaps
    it in with one assignment."""

    def renew() -> str:
        new = rebuilt(svc.state, lenient)
        new.loaded = svc.state.loaded  # a reload during the build is not undone
        new.refresh_caseloads()
        svc.swap(new)
        svc.problems.pop("data", None)
        return f"reference date {new.as_of}"

    def fail(reason: str) -> None:
        svc.problems["data"] = f"{reason}; still serving the registry as of {svc.state.as_of}"

    source = svc.state.indicators
    external = source.external_path if source is not None else None
    inputs = (external,) if external is not None else ()
    return DataWatcher(svc.state.store.source, interval_s, renew, fail, say, inputs)


class Follower(Poller):
    """Keeps one of several workers in step with the rest: it swaps in a new materialized
    generation when `CURRENT` moves (see serving.state.materialize), and reloads the champions when
    any worker or host was asked to (the service database's reload counter)."""

    name = "follower"

    def __init__(
        self,
        svc: Services,
        interval_s: float,
        open_generation: Callable[[Path, Loaded], ServiceState] | None = None,
        root: Path | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        super().__init__(interval_s, say)
        self.svc = svc
        self.open_generation = open_generation
        self.root = root
        self._generation = current(root) if root is not None else None

    def tick(self) -> None:
        try:
            self.step()
        except Exception as exc:  # noqa: BLE001 - a failed look is retried, never fatal
            reason = f"could not follow the other workers: {exc}"
            if self.svc.problems.get("follow") != reason:
                self.say(reason)
            self.svc.problems["follow"] = reason
        else:
            self.svc.problems.pop("follow", None)

    def step(self) -> None:
        svc = self.svc
        asked = svc.web.reload_generation()
        if asked > svc.reload_seen:
            svc.reload_seen = asked
            reason = svc.reload()
            self.say(reason or f"reloaded the champions (reload {asked})")
        if self.root is None or self.open_generation is None:
            return
        gen = current(self.root)
        if gen is not None and gen != self._generation:
            new = self.open_generation(gen, svc.state.loaded)
            svc.swap(new)
            self._generation = gen
            self.say(f"serving the state of {gen.name}: reference date {new.as_of}")
        failed = self.root / FAILED
        if failed.exists():
            svc.problems["generation"] = (
                f"{failed.read_text()}; still serving {gen.name if gen else ''}"
            )
        else:
            svc.problems.pop("generation", None)
