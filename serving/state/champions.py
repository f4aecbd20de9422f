"""The champions the service serves: each task's champion model from the registry, with its latest
monitoring verdict."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from features.core.errors import RegistryError
from features.tasks import task_names
from models.effects_model import EffectsModel, load_effects
from models.monitoring import latest_status
from models.registry import load_model
from models.risk_model import RiskModel


@dataclass(frozen=True)
class Loaded:
    models: dict[str, tuple[RiskModel, dict]]
    loaded_at: str
    # each task's latest `sunshine monitor` verdict, read from MLflow when the models load
    monitoring: dict[str, dict] = field(default_factory=dict)
    # each task's champion effects model, where one was estimated with its champion risk model
    effects: dict[str, EffectsModel] = field(default_factory=dict)

    def effects_for(self, task: str) -> EffectsModel | None:
        return self.effects.get(task)

    @property
    def missing(self) -> list[str]:
        """Tasks with no champion yet: their endpoints answer 503 until one is promoted and
        the service reloads."""
        return [t for t in task_names() if t not in self.models]

    def model(self, task: str) -> tuple[RiskModel, dict]:
        if task not in self.models:
            raise RegistryError(
                f"no champion model for {task} yet: an analyst trains and promotes one "
                "(`sunshine train`, `sunshine promote`), then an admin reloads the service"
            )
        return self.models[task]


def load_champions() -> Loaded:
    """The champions of the tasks that have one: a programme may start with one model.
    Raises RegistryError, saying what to do, when no task has a champion."""
    models = {}
    for task in task_names():
        try:
            models[task] = load_model(task)
        except RegistryError:
            continue
    if not models:
        raise RegistryError(
            "no champion for "
            + ", ".join(task_names())
            + ": train with `sunshine train --task T --data DIR`, then `sunshine promote --task T`"
        )
    monitoring = {t: status for t in models if (status := latest_status(t)) is not None}
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return Loaded(models, now, monitoring, _effects(models))


def _effects(models: dict[str, tuple[RiskModel, dict]]) -> dict[str, EffectsModel]:
    """Each task's champion effects model, kept only beside the risk-model version whose
    encoding it reads: after a new risk champion, its effects must be estimated again."""
    out = {}
    for task, (model, facts) in models.items():
        try:
            effects, _ = load_effects(task)
        except RegistryError:
            continue
        if effects.risk_version == str(facts["version"]) and effects.reads(model.features):
            out[task] = effects
    return out
