"""The deployable effects model: for each support option, what `sunshine effects` learned, and
for each option that passed the gate, the DR-learner's final-stage LightGBM model, which
estimates how much offering the option would change a person's chance of the outcome.

It reads a person's row in the risk model's encoding (the service's feature matrix), so it
serves only beside the risk-model version it was estimated with; it needs no EconML."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from models.registry import load_registered
from training.effects import effect_inputs

ARTIFACT_KEY = "effects_model"


@dataclass(frozen=True)
class OptionFacts:
    """What the estimate said of one option; `booster` only where the gate let it serve."""

    code: str
    columns: list[int]  # the option's own factors in the risk model's encoding
    ate: tuple[float, float, float]
    offered: int
    detectable: bool
    verdict: str
    prevented_per_1000: float  # offering to the capacity share by estimated benefit
    booster: lgb.Booster | None = None


@dataclass
class EffectsModel:
    task: str
    risk_version: str  # the risk model whose encoding the boosters read
    features: list[str]
    capacity: float
    options: dict[str, OptionFacts] = field(default_factory=dict)

    @property
    def served(self) -> list[str]:
        return [c for c, o in self.options.items() if o.booster is not None]

    def reads(self, features: list[str]) -> bool:
        """Whether a risk model's encoding is the one these boosters were fitted on."""
        return list(features) == list(self.features)

    def changes(self, X: np.ndarray, risk: np.ndarray) -> dict[str, np.ndarray]:
        """Each served option's estimated change in the chance of the outcome, per row of the
        risk model's encoding and its raw score (negative: the option lowers the risk)."""
        return {
            c: np.asarray(o.booster.predict(effect_inputs(X, o.columns, risk), num_threads=1))
            for c, o in self.options.items()
            if o.booster is not None
        }

    def signature(self) -> ModelSignature:
        """What the pyfunc reads and gives, for MLflow: the risk model's encoding (every column
        optional, numbers) with its raw score, and each served option's change."""
        inputs: list[ColSpec | TensorSpec] = [
            ColSpec("double", f, required=False) for f in self.features
        ]
        outputs: list[ColSpec | TensorSpec] = [ColSpec("double", c) for c in self.served]
        return ModelSignature(
            Schema([*inputs, ColSpec("double", "raw_score")]), Schema(outputs) if outputs else None
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        facts = {}
        for code, o in self.options.items():
            facts[code] = {
                "columns": o.columns,
                "ate": list(o.ate),
                "offered": o.offered,
                "detectable": o.detectable,
                "verdict": o.verdict,
                "prevented_per_1000": o.prevented_per_1000,
                "served": o.booster is not None,
            }
            if o.booster is not None:
                (path / f"{code}.txt").write_text(o.booster.model_to_string(), encoding="utf-8")
        meta = {
            "task": self.task,
            "risk_version": self.risk_version,
            "features": self.features,
            "capacity": self.capacity,
            "options": facts,
        }
        (path / "effects.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> EffectsModel:
        meta = json.loads((path / "effects.json").read_text(encoding="utf-8"))
        options = {}
        for code, f in meta["options"].items():
            booster = (
                lgb.Booster(model_str=(path / f"{code}.txt").read_text(encoding="utf-8"))
                if f["served"]
                else None
            )
            options[code] = OptionFacts(
                code,
                f["columns"],
                tuple(f["ate"]),
                f["offered"],
                f["detectable"],
                f["verdict"],
                f["prevented_per_1000"],
                booster,
            )
        return cls(meta["task"], meta["risk_version"], meta["features"], meta["capacity"], options)


class EffectsPyfunc(PythonModel):
    """Rows in the risk model's encoding, with its raw score as `raw_score`, in; each served
    option's estimated change out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.model = EffectsModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        X = model_input[self.model.features].to_numpy(np.float32, na_value=np.nan)
        return pd.DataFrame(self.model.changes(X, model_input["raw_score"].to_numpy(float)))


def effects_name(task: str) -> str:
    return f"sunshine-effects-{task}"


def load_effects(task: str) -> tuple[EffectsModel, dict]:
    """The task's champion effects model with its registry facts."""
    return load_registered(
        effects_name(task), f"estimate one with `sunshine effects --task {task} --data DIR`"
    )
