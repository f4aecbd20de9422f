"""What the service holds: the champions, the event store and today's feature cache.

Reload builds a complete new `Loaded` and swaps one reference, so a request that started on
the old models finishes on them.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.compute.builder import FeatureBuilder
from features.compute.labels import cohort_mask
from features.compute.matrix import FeatureMatrix, build_matrix
from features.storage.store import Store
from features.tasks import SupportOption, Task, get_task, task_names
from models.risk_model import RiskModel, Scored
from serving.scoring.scorer import most_helpful
from serving.state.caseload import DEFAULT_RISING, Caseload, build_caseload, month_before
from serving.state.champions import Loaded
from serving.state.indicator_source import IndicatorSource, indicator_source

# a person has history at $d when an event both happened and was recorded before it
HAS_HISTORY = (
    "EXISTS (SELECT 1 FROM events e WHERE e.pk = p.pk "
    "AND e.event_time < $d AND e.available_time < $d)"
)


LAST_CONTACT = "social_worker_contact__days_since"
COHORT_CACHE = 32  # (task, as_of) cohorts kept in memory: a bit per person each


@dataclass
class ServiceState:
    store: Store
    loaded: Loaded
    persons: pd.DataFrame  # person_id -> district, and whether they have any events
    today: FeatureMatrix  # features of every person as of the reference date, in pk order
    indicators: IndicatorSource | None = None
    # features a month before the reference date of today's cohort members who were in a
    # task's cohort then: what "the change since last month" is scored from
    last_month: FeatureMatrix | None = None
    rising: float = DEFAULT_RISING
    # when this state was built from the registry (a data refresh builds a new one)
    built_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    _caseloads: dict[str, Caseload] = field(default_factory=dict)
    # per task: the caseload and effects model the members' most helpful options came from
    _benefits: dict[str, tuple] = field(default_factory=dict)
    _caseload_lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _cohorts: OrderedDict = field(default_factory=OrderedDict)
    _cohort_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def as_of(self) -> dt.date:
        return self.store.reference_date

    # The columns every request reads, as arrays made once: pandas' `.at` on the Arrow-backed
    # table cost a tenth of the one-row answer's time.
    @functools.cached_property
    def _pks(self) -> np.ndarray:
        return self.persons["pk"].to_numpy(np.int64)

    @functools.cached_property
    def _districts(self) -> pd.Categorical:  # a few names, not a string object per person
        return pd.Categorical(self.persons["district"])

    @functools.cached_property
    def _history_today(self) -> np.ndarray:
        return self.persons["history_today"].to_numpy(bool)

    def _row(self, person_id: str) -> int:
        """A known person's row in `persons` and in today's matrix."""
        return self.persons.index.get_loc(person_id)

    def known(self, person_id: str) -> bool:
        return person_id in self.persons.index

    def district(self, person_id: str) -> str | None:
        """Where a known person lives today."""
        code = self._districts.codes[self._row(person_id)]
        return None if code < 0 else str(self._districts.categories[code])

    def pk(self, person_id: str) -> int:
        return int(self._pks[self._row(person_id)])

    def builder(self) -> FeatureBuilder:
        """A feature builder on this thread's own DuckDB connection."""
        if not hasattr(self._local, "builder"):
            self._local.builder = FeatureBuilder(self.store, con=self.store.cursor())
        return self._local.builder

    def encoded(self, person_id: str, as_of: dt.date, model: RiskModel) -> np.ndarray:
        """The person's features on as_of as the model's input: today's from the matrix,
        another day's built from the store."""
        if as_of == self.as_of:
            return self.today.encoded(np.array([self._row(person_id)]), model.features)
        spine = pd.DataFrame({"person_id": [person_id], "as_of": [as_of]})
        return model.prepare(self.builder().build(spine))

    def cohort(self, task: Task, as_of: dt.date) -> np.ndarray:
        """Who is in the task's cohort on as_of, as a mask over the persons in key order.
        Computed for the whole registry once per (task, date) and kept for the most recent
        dates asked."""
        key = (task.name, as_of)
        with self._cohort_lock:
            if key not in self._cohorts:
                self._cohorts[key] = cohort_mask(self.store, task, as_of)
                while len(self._cohorts) > COHORT_CACHE:
                    self._cohorts.popitem(last=False)
            self._cohorts.move_to_end(key)
            return self._cohorts[key]

    def known_cohorts(self) -> dict[tuple[str, dt.date], np.ndarray]:
        """The cohort masks computed so far, by (task, date)."""
        with self._cohort_lock:
            return dict(self._cohorts)

    def adopt_cohort(self, task: str, as_of: dt.date, mask: np.ndarray) -> None:
        """A cohort mask computed elsewhere (a materialized state's) for this state's data."""
        with self._cohort_lock:
            self._cohorts[(task, as_of)] = mask

    def in_cohort(self, task: Task, person_id: str, as_of: dt.date) -> bool:
        return bool(self.cohort(task, as_of)[self.pk(person_id) - 1])

    def members(self, task: Task, as_of: dt.date) -> pd.Index:
        """The person ids in the task's cohort on as_of."""
        return self.persons.index[self.cohort(task, as_of)[self.persons["pk"].to_numpy() - 1]]

    def caseload(self, task: Task) -> Caseload:
        """The task's caseload under its current champion, built once per model version."""
        model, facts = self.loaded.model(task.name)
        version = str(facts["version"])
        with self._caseload_lock:
            known = self._caseloads.get(task.name)
            if known is not None and known.version == version:
                return known
            now = self.members(task, self.as_of)
            was = now[self.cohort(task, self.previous)[self.persons.loc[now, "pk"] - 1]]
            built = build_caseload(
                model,
                version,
                task.name,
                self.persons.loc[now],
                self.today.frame(now),
                self.last_month.frame(was) if self.last_month is not None else None,
                self.as_of,
                self.rising,
            )
            self._caseloads[task.name] = built
            return built

    def benefits(self, task: Task, options: tuple[SupportOption, ...]) -> pd.DataFrame | None:
        """Each caseload member's most helpful served support option today and its estimated
        change (`most_helpful`), indexed by person_id; None when no effects model serves the
        task. Computed once per caseload and effects model, since a caseload page sorted by
        benefit reads every member's."""
        effects = self.loaded.effects_for(task.name)
        if effects is None or not effects.served:
            return None
        caseload = self.caseload(task)
        with self._caseload_lock:
            kept = self._benefits.get(task.name)
        if kept is not None and kept[0] is caseload and kept[1] is effects:
            return kept[2]
        model, _ = self.loaded.model(task.name)
        rows = self.persons.index.get_indexer(caseload.frame.index)
        raw = caseload.frame["raw_score"].to_numpy(float)
        best = most_helpful(effects, self.today.encoded(rows, model.features), raw, options)
        best.index = caseload.frame.index
        with self._caseload_lock:
            self._benefits[task.name] = (caseload, effects, best)
        return best

    def kept_score(
        self, task: Task, model: RiskModel, version: str, person_id: str, X: np.ndarray, k: int
    ) -> Scored | None:
        """A cohort member's score today with k reasons as the task's caseload computed them
        under this model `version`, when it did (`Caseload.scored`); None otherwise."""
        with self._caseload_lock:
            caseload = self._caseloads.get(task.name)
        if caseload is None or caseload.version != version:
            return None
        return caseload.scored(person_id, X, k, model.features)

    def built_caseloads(self) -> dict[str, Caseload]:
        """The caseloads built so far, by task."""
        with self._caseload_lock:
            return dict(self._caseloads)

    def adopt(self, caseload: Caseload) -> None:
        """A caseload built elsewhere (a materialized state's) for this state's data."""
        with self._caseload_lock:
            self._caseloads[caseload.task] = caseload

    def refresh_caseloads(self) -> None:
        """Build the caseload of every served task now, not at a caseworker's first request."""
        for name in self.loaded.models:
            self.caseload(get_task(name))

    @property
    def previous(self) -> dt.date:
        """The date "since last month" compares with."""
        return month_before(self.as_of)

    def history(self, person_id: str, as_of: dt.date) -> bool:
        """Whether anything was recorded for the person before as_of."""
        if as_of == self.as_of:
            return bool(self._history_today[self._row(person_id)])
        pk = self.pk(person_id)
        sql = f"SELECT {HAS_HISTORY} FROM persons p WHERE p.pk = $pk"
        return bool(self.builder().con.execute(sql, {"pk": pk, "d": as_of}).fetchall()[0][0])


def build_state(
    store: Store,
    loaded: Loaded,
    indicators: IndicatorSource | None = None,
    rising: float = DEFAULT_RISING,
    out: Path | None = None,
) -> ServiceState:
    """Everything a request reads, built before the first one: today's features of every
    person, each caseload and what it is compared with a month earlier. With `out`, the
    feature matrices are written there (today.npy, last_month.npy) and mapped, not held."""
    persons = store.con.execute(
        f"SELECT p.person_id, p.pk, h.district, {HAS_HISTORY} AS history_today "
        "FROM persons p JOIN residence h USING (pk) ORDER BY p.pk",
        {"d": store.reference_date},
    ).df()
    persons = persons.set_index("person_id")
    spine = pd.DataFrame({"person_id": persons.index, "as_of": store.reference_date})
    builder = FeatureBuilder(store)
    today = build_matrix(builder, spine, out / "today.npy" if out else None)
    # the day of the last social-worker contact, from the feature that counts days since it
    since = today.column(LAST_CONTACT)
    persons["last_contact"] = pd.Timestamp(store.reference_date) - pd.to_timedelta(since, "D")
    indicators = indicators if indicators is not None else indicator_source(store)
    state = ServiceState(store, loaded, persons, today, indicators, rising=rising)
    pk = persons["pk"].to_numpy() - 1
    was = np.zeros(len(persons), bool)
    for name in task_names():
        task = get_task(name)
        was |= state.cohort(task, store.reference_date)[pk] & state.cohort(task, state.previous)[pk]
    earlier = pd.DataFrame({"person_id": persons.index[was], "as_of": state.previous})
    state.last_month = build_matrix(builder, earlier, out / "last_month.npy" if out else None)
    state.refresh_caseloads()
    return state
