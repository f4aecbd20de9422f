"""The deployable risk model: booster + calibrator + feature spec, and the one scoring path.

The API, the batch scorer and the MLflow pyfunc all score through `RiskModel.score`, so a
person gets the same probability and the same reasons whichever way they are scored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.spec import FEATURES_BY_NAME, Feature, register, with_inputs
from training.calibration import Calibrator
from training.explain import TopK, contributions, threads_for, top_k

BOOSTER_FILE = "booster.txt"
META_FILE = "risk_model.json"
TIERS = ("low", "medium", "high")


class FeatureInputError(ValueError):
    """Records that cannot be scored: each problem names the record and field."""

    def __init__(self, problems: list[tuple[int, str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"record {r}: {f}: {why}" for r, f, why in problems[:20]))


@dataclass
class Scored:
    probability: np.ndarray
    raw_score: np.ndarray
    percentile: np.ndarray
    tier: np.ndarray
    base_value: np.ndarray | None = None
    # what the reasons are picked from, as `top_k` takes them: contributions, the model matrix,
    # the model's features, how many reasons per row and the candidate positions (None when
    # not explaining)
    reasons_from: tuple[np.ndarray, np.ndarray, list[str], int, np.ndarray] | None = None
    # the reasons when they were picked earlier (a caseload member's, kept by the caseload)
    picked: TopK | None = None

    @property
    def explained(self) -> bool:
        return self.reasons_from is not None or self.picked is not None

    @functools.cached_property
    def top(self) -> TopK | None:
        """The reasons as arrays, picked when first read (batch scoring reads them in its
        writer thread, off the thread that runs TreeSHAP)."""
        if self.picked is not None:
            return self.picked
        return None if self.reasons_from is None else top_k(*self.reasons_from)


def _feature(d: dict[str, Any]) -> Feature:
    """A Feature from its JSON form (lists back to tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return Feature(**fields)


@dataclass
class RiskModel:
    task: str
    booster: lgb.Booster
    calibrator: Calibrator
    features: list[str]
    # raw scores of the reference cohort (the test period) as quantiles: percentiles and tiers
    # rank by the raw score, which is strictly ordered where a step calibrator ties rows
    reference_quantiles: list[float] = field(default_factory=list)
    # share of the reference cohort in the high tier, then in high+medium
    tier_shares: tuple[float, float] = (0.10, 0.30)
    metadata: dict[str, Any] = field(default_factory=dict)
    # the reference distributions monitoring compares later cohorts with (training.drift)
    monitoring: dict[str, Any] = field(default_factory=dict)

    # -- input -------------------------------------------------------------------------------
    @functools.cached_property
    def used(self) -> np.ndarray:
        """Positions of the features some tree splits on. The others cannot change a score or
        an explanation (their contribution is exactly 0), so they need not be computed."""
        return np.flatnonzero(self.booster.feature_importance("split") > 0)

    def needed_features(self) -> tuple[Feature, ...]:
        return with_inputs([self.features[i] for i in self.used])

    def prepare(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's feature matrix: numbers as float32, categories as their codes.

        LightGBM coded each category by its position in the spec's list during training, so
        codes computed from the spec here are the same; NaN means missing. A feature no tree
        uses may be absent from the frame.
        """
        used = {self.features[i] for i in self.used}
        missing = [f for f in self.features if f not in frame.columns and f in used]
        if missing:
            raise FeatureInputError([(0, f, "missing feature") for f in missing])
        X = np.full((len(frame), len(self.features)), np.nan, np.float32)
        present = [n for n in self.features if n in frame.columns]
        numeric = [n for n in present if not FEATURES_BY_NAME[n].categorical]
        idx = {n: i for i, n in enumerate(self.features)}
        block = frame[numeric]
        problems = []
        if all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
            X[:, [idx[n] for n in numeric]] = block.to_numpy(np.float32, na_value=np.nan)
        else:
            for name in numeric:
                col = block[name]
                num = pd.to_numeric(col, errors="coerce")
                for i in np.flatnonzero((num.isna() & col.notna()).to_numpy()):
                    problems.append((int(i), name, f"{col.iat[i]!r} is not a number"))
                X[:, idx[name]] = num.to_numpy(np.float32, na_value=np.nan)
        for name in present:
            spec = FEATURES_BY_NAME[name]
            if spec.categories is None:
                continue
            categories = spec.categories
            col = frame[name]
            if not (
                isinstance(col.dtype, pd.CategoricalDtype)
                and tuple(col.cat.categories) == categories
            ):
                values = col.astype(object).where(col.notna(), None)
                bad = (~values.isin([*categories, None])).to_numpy()
                for i in np.flatnonzero(bad):
                    problems.append(
                        (int(i), name, f"{values.iat[i]!r} is not one of {list(categories)}")
                    )
                # reported above; dropped here, since pandas refuses unknown categories
                values = values.where(~bad, None)
                col = pd.Series(pd.Categorical(values, categories=categories))
            codes = col.cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            X[:, idx[name]] = codes
        if problems:
            raise FeatureInputError(problems)
        return X

    # -- scoring -----------------------------------------------------------------------------
    def raw_score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True, num_threads=threads_for(len(X))))

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.raw_score(self.prepare(frame))

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        return contributions(self.booster, self.prepare(frame))

    def score(self, frame: pd.DataFrame, explain: int = 0) -> Scored:
        """Probability, percentile and tier; with explain=k also the top k factors."""
        return self.score_encoded(self.prepare(frame), explain)

    def score_encoded(self, X: np.ndarray, explain: int = 0) -> Scored:
        """`score` of a matrix already in the model's encoding (`prepare`'s output, or rows
        of the service's feature matrix)."""
        if explain:
            contrib = contributions(self.booster, X)
            raw = contrib.sum(axis=1)
            base = contrib[:, -1]
            reasons = (contrib, X, self.features, explain, self.used)
        else:
            raw, base, reasons = self.raw_score(X), None, None
        p = self.calibrator.transform(raw)
        return Scored(p, raw, self.percentile(raw), self.tier(raw), base, reasons)

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        """Share of the reference cohort with a lower raw score, in percent."""
        q = self._quantiles
        if not len(q):
            return np.full(len(raw), np.nan)
        return 100.0 * np.searchsorted(q, raw, side="left") / len(q)

    def tier(self, raw: np.ndarray) -> np.ndarray:
        high, med = self.thresholds()
        raw = np.asarray(raw)
        return np.select([raw >= high, raw >= med], [TIERS[2], TIERS[1]], TIERS[0]).astype(object)

    def thresholds(self) -> tuple[float, float]:
        """The raw scores where the high and medium tiers start."""
        return self._tier_starts

    @functools.cached_property
    def _quantiles(self) -> np.ndarray:  # read on every request: made an array once
        return np.asarray(self.reference_quantiles, float)

    @functools.cached_property
    def _tier_starts(self) -> tuple[float, float]:  # asked on every request: computed once
        q = self._quantiles
        if not len(q):
            return (np.inf, np.inf)
        return (
            float(np.quantile(q, 1 - self.tier_shares[0])),
            float(np.quantile(q, 1 - self.tier_shares[1])),
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        meta = {
            "task": self.task,
            "features": self.features,
            "calibrator": self.calibrator.to_dict(),
            "reference_quantiles": self.reference_quantiles,
            "tier_shares": list(self.tier_shares),
            "metadata": self.metadata,
            "monitoring": self.monitoring,
            # the codebook features it uses travel with it: a process that loads the model
            # knows their labels, directions and categories without the dataset
            "codebook_features": [
                dataclasses.asdict(FEATURES_BY_NAME[n])
                for n in self.features
                if FEATURES_BY_NAME[n].item is not None
            ],
        }
        (directory / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path) -> RiskModel:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        register(tuple(_feature(d) for d in meta.get("codebook_features", [])))
        return cls(
            task=meta["task"],
            booster=lgb.Booster(model_file=str(directory / BOOSTER_FILE)),
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            features=meta["features"],
            reference_quantiles=meta["reference_quantiles"],
            tier_shares=tuple(meta["tier_shares"]),
            metadata=meta["metadata"],
            monitoring=meta.get("monitoring", {}),
        )

    @classmethod
    def assemble(
        cls,
        booster: lgb.Booster,
        calibrator: Calibrator,
        features: list[str],
        reference_raw: np.ndarray | None,
        *,
        task: str,
        capacity: float,
    ) -> RiskModel:
        """The deployable model of a training run; training scores through it (its
        `ModelFactory`), so every metric it reports is a metric of this model."""
        q = [] if reference_raw is None else np.quantile(reference_raw, np.linspace(0, 1, 1001))
        return cls(
            task=task,
            booster=booster,
            calibrator=calibrator,
            features=list(features),
            reference_quantiles=list(map(float, q)),
            tier_shares=(capacity, min(0.9, 3 * capacity)),
        )
