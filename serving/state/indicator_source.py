"""The programme indicators over the served registry, each month computed once and kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.core.months import last_complete_month
from features.indicators.inputs import (
    IndicatorConfig,
    load_indicator_config,
    read_external,
    read_population,
)
from features.indicators.ranking import indicator_table
from features.storage.store import Store

KEPT_TABLES = 16


@dataclass
class IndicatorSource:
    """The programme indicators over the served registry. A month's figures are those of the
    registry as it stood at the month's end, so once computed they never change: each month is
    computed once, on first request, and kept."""

    store: Store
    config: IndicatorConfig
    population: pd.DataFrame
    external: pd.DataFrame | None = None
    # where `external` was read from: read again with the registry, whose new months it may
    # now hold figures for
    external_path: Path | None = None
    _months: dict = field(default_factory=dict)
    # published tables by the months they cover: the same request twice is computed once (its
    # intervals, rank ranges and suppression cannot change either)
    _tables: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def table(self, months: list[str]) -> pd.DataFrame:
        key = tuple(months)
        with self._lock:  # one point-in-time connection at a time
            if key not in self._tables:
                if len(self._tables) >= KEPT_TABLES:
                    self._tables.pop(next(iter(self._tables)))  # the oldest asked for
                self._tables[key] = indicator_table(
                    self.store, months, self.config, self.population, self.external, self._months
                )
            return self._tables[key]


def indicator_source(
    store: Store,
    settings: IndicatorConfig | None = None,
    people: pd.DataFrame | None = None,
    external: Path | None = None,
) -> IndicatorSource:
    """The programme indicators over `store`: the given settings and population (the
    defaults otherwise), and the external figures of the last month complete before the
    data's reference date."""
    settings = settings if settings is not None else load_indicator_config()
    people = people if people is not None else read_population()
    month = last_complete_month(store.reference_date)
    outside = read_external(external, settings, month) if external else None
    return IndicatorSource(store, settings, people, outside, external)
