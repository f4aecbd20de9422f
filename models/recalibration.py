"""Local recalibration: a site's own matured outcomes refit a model's calibrator.

A model carried to a new district or site often still ranks well but its probabilities no
longer mean what they say (the CTN-0094 trials held out one at a time show it). Recalibration
keeps the booster, so the ranking, the reasons, the tiers and percentiles (which follow the raw
score) stay exactly as they were, and fits a new map from raw score to probability on the
site's outcomes. Half of the local persons fit it and the other half judge it: ECE and the
calibration curve before and after are measured on persons the new calibrator never saw. The
result is registered as a new version (challenger) that names the version it came from.

One random half can flatter or wrong a calibrator by luck (on CTN-0051 one half gave ECE 0.024
where the median over 100 halves is 0.070), so the judgement is made on REPEATS halves drawn
afresh: the median ECE before and after and their 90% ranges, beside the ECE a perfectly
calibrated model shows on the same halves by chance (the floor). The verdict compares medians.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from features.compute.builder import FeatureBuilder
from features.compute.labels import read_labels
from features.core.errors import InputError
from features.storage.store import Store
from models.registry import load_model, log_and_register
from models.risk_model import RiskModel
from models.tracking import experiment_id
from training.calibration import Calibrator, choose_calibrator
from training.metrics import brier, calibration_bins, ece, ece_by_chance

MIN_EACH = 100  # outcomes of each kind (events, non-events) a recalibration needs in all
SEED = 7
REPEATS = 100  # halves the verdict is judged on
FLOOR_DRAWS = 20  # perfectly calibrated outcome sets simulated on each half


@dataclass(frozen=True)
class Spread:
    """A figure over repeated halves: its median and 90% range (5th to 95th percentile)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        v = np.asarray(values, float)
        return cls(float(np.median(v)), float(np.quantile(v, 0.05)), float(np.quantile(v, 0.95)))

    def said(self) -> str:
        return f"{self.median:.4f} (90% range {self.low:.4f}-{self.high:.4f})"


def repeated_halves(
    persons: pd.Series, y: np.ndarray, raw: np.ndarray, old: np.ndarray, repeats: int = REPEATS
) -> dict[str, Spread]:
    """ECE before (the source calibrator) and after (a calibrator refitted on the other half)
    on `repeats` fresh halves, and a perfectly calibrated model's ECE on the same halves.
    The halves are drawn as `halves` draws them (a person's rows on one side, persons with
    and without an event split evenly), by a shuffle: a hundred halves of 4,000 rows, with
    their chance floors, take about three seconds."""
    codes, _ = pd.factorize(persons)
    has_event = np.bincount(codes, weights=y, minlength=codes.max() + 1) > 0
    rng = np.random.default_rng(SEED)
    before, after, floor, floor_p95 = [], [], [], []
    for k in range(repeats):
        order = rng.permutation(len(has_event))
        side = np.empty(len(has_event), bool)
        for stratum in (True, False):
            members = order[has_event[order] == stratum]
            side[members] = np.arange(len(members)) % 2 == 0
        r = fitted_on(side[codes], y, raw, old)
        yc = y[r.check]
        before.append(ece(yc, r.before))
        after.append(ece(yc, r.after))
        chance = ece_by_chance(r.after, int(yc.sum()), FLOOR_DRAWS, k)
        floor.append(chance[0])
        floor_p95.append(chance[1])
    return {
        "before": Spread.of(before),
        "after": Spread.of(after),
        "floor": Spread.of(floor),
        "floor_p95": Spread.of(floor_p95),
    }


def verdict(spread: dict[str, Spread]) -> str:
    """What the repeated halves say of the new calibrator, on their medians: within what a
    perfectly calibrated model shows by chance (the median half's 95th percentile of it)."""
    after, floor = spread["after"], spread["floor_p95"]
    if after.median <= floor.median:
        return "the new calibrator cannot be told from perfect calibration"
    if after.median < spread["before"].median:
        return "the new calibrator is better than the old, but off by more than chance explains"
    return "the new calibrator is no better than the old one"


@dataclass(frozen=True)
class Recalibration:
    task: str
    source_version: str
    version: int
    run_id: str
    method: str
    rows: int
    positives: int
    fit_rows: int
    check_rows: int
    before: dict[str, float]  # on the held-out half, with the source calibrator
    after: dict[str, float]  # the same rows, with the new one
    curves: dict[str, list[dict]]
    spread: dict[str, Spread]  # ECE over repeated halves: before, after, and the floor


def halves(persons: pd.Series, y: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the local rows, stratified by outcome, a person's rows on one side."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
    fit_idx, check_idx = next(fold.split(np.zeros(len(y)), y, persons))
    fit = np.zeros(len(y), bool)
    fit[fit_idx] = True
    return fit, ~fit


@dataclass(frozen=True)
class Refit:
    """A calibrator fitted on half of local rows, and the other half's probabilities before
    (the source calibrator's) and after (the new one's)."""

    calibrator: Calibrator
    fit: np.ndarray
    check: np.ndarray
    before: np.ndarray
    after: np.ndarray


def refit(
    persons: pd.Series, y: np.ndarray, raw: np.ndarray, old: np.ndarray, seed: int = SEED
) -> Refit:
    """The recalibration itself, for `sunshine recalibrate` and the CTN-0094 report alike:
    fit on one half of the persons, judge on the other. `old` holds every row's probability
    under the source calibrator."""
    return fitted_on(halves(persons, y, seed)[0], y, raw, old)


def fitted_on(fit: np.ndarray, y: np.ndarray, raw: np.ndarray, old: np.ndarray) -> Refit:
    """A calibrator fitted on the rows `fit`, judged on the others."""
    calibrator, _ = choose_calibrator(raw[fit], y[fit])
    return Refit(calibrator, fit, ~fit, old[~fit], calibrator.transform(raw[~fit]))


def _check_size(y: np.ndarray, path: Path) -> None:
    events, others = int(y.sum()), int(len(y) - y.sum())
    if min(events, others) < MIN_EACH:
        raise InputError(
            f"{path}: too few outcomes to recalibrate: {events} event(s) and {others} "
            f"non-event(s); it needs at least {MIN_EACH} of each ({MIN_EACH // 2} to fit the "
            f"new calibrator and {MIN_EACH // 2} to check it on persons it never saw). "
            "Wait for more outcomes to mature, or pool neighbouring sites."
        )


def recalibrate(
    store: Store, task: str, labels: Path, from_version: str | None = None
) -> Recalibration:
    """Fit, check, log and register; raises InputError when the local data is too small."""
    model, facts = load_model(task, version=from_version)
    spine = read_labels(labels, store)
    y = spine["label"].to_numpy().astype(int)
    _check_size(y, labels)
    frame = FeatureBuilder(store).build(spine)
    raw = model.raw_scores(frame)
    r = refit(spine["person_id"], y, raw, model.calibrator.transform(raw))
    calibrator, fit, check, p_before, p_after = r.calibrator, r.fit, r.check, r.before, r.after
    before = {"ece": ece(y[check], p_before), "brier": brier(y[check], p_before)}
    chance_median, chance_high = ece_by_chance(p_after, int(y[check].sum()))
    after = {
        "ece": ece(y[check], p_after),
        "brier": brier(y[check], p_after),
        "ece_chance_median": chance_median,
        "ece_chance_p95": chance_high,
    }
    curves = {
        "before": calibration_bins(y[check], p_before),
        "after": calibration_bins(y[check], p_after),
    }
    spread = repeated_halves(spine["person_id"], y, raw, model.calibrator.transform(raw))
    local = dataclasses.replace(
        model,
        calibrator=calibrator,
        metadata={**model.metadata, "recalibrated_from": facts["version"]},
    )
    version, run_id = _register(local, facts, labels, frame, y, fit, before, after, curves, spread)
    return Recalibration(
        task,
        facts["version"],
        version,
        run_id,
        calibrator.method,
        len(y),
        int(y.sum()),
        int(fit.sum()),
        int(check.sum()),
        before,
        after,
        curves,
        spread,
    )


def _register(
    model: RiskModel,
    facts: dict,
    labels: Path,
    frame: pd.DataFrame,
    y: np.ndarray,
    fit: np.ndarray,
    before: dict[str, float],
    after: dict[str, float],
    curves: dict[str, list[dict]],
    spread: dict[str, Spread],
) -> tuple[int, str]:
    """A run that carries the source run's test metrics and tags (the booster, and so the
    ranking, is the same) and the local before/after figures; the model registered from it."""
    client = MlflowClient()
    source = client.get_run(facts["run_id"])
    digest = hashlib.sha256(Path(labels).read_bytes()).hexdigest()[:16]
    now = dt.datetime.now(dt.UTC)
    with mlflow.start_run(
        experiment_id=experiment_id(f"sunshine-{model.task}"),
        run_name=f"{model.task}-{now:%Y%m%d-%H%M%S}-recalibrated-from-v{facts['version']}",
    ) as run:
        mlflow.set_tags(
            {
                **{k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.")},
                "recalibrated_from": facts["version"],
                "local_labels": f"labels:{digest}",
            }
        )
        mlflow.log_params(
            {"recalibrated_from": facts["version"], "calibration": model.calibrator.method}
        )
        mlflow.log_metrics(
            {
                **{k: v for k, v in source.data.metrics.items() if k.startswith("test_")},
                "local_rows": float(len(y)),
                "local_positives": float(y.sum()),
                "local_fit_rows": float(fit.sum()),
                "local_ece_before": before["ece"],
                "local_ece_after": after["ece"],
                "local_brier_before": before["brier"],
                "local_brier_after": after["brier"],
                "local_ece_chance_median": after["ece_chance_median"],
                "local_ece_chance_p95": after["ece_chance_p95"],
                **{
                    f"local_ece_{which}_{stat}": getattr(figure, stat)
                    for which, figure in spread.items()
                    for stat in ("median", "low", "high")
                },
            }
        )
        mlflow.log_dict(curves, "local_calibration.json")
        from training import plots  # matplotlib: a training-only dependency

        figure = plots.curves(curves, f"held-out local half, from version {facts['version']}")
        mlflow.log_figure(figure, "local_calibration.png")
        plots.close(figure)
        card = recalibration_card(model, facts, digest, y, fit, before, after, spread)
        mlflow.log_text(card, "model_card.md")
        example = frame[model.features].head(5)
        version = log_and_register(model, example, card)
    return version, run.info.run_id


def recalibration_card(
    model: RiskModel,
    facts: dict,
    digest: str,
    y: np.ndarray,
    fit: np.ndarray,
    before: dict[str, float],
    after: dict[str, float],
    spread: dict[str, Spread],
) -> str:
    return f"""# Model card: sunshine-{model.task}, recalibrated

Version {facts["version"]}'s booster with a calibrator refitted on local outcomes
(labels {digest}: {len(y):,} rows, {int(y.sum()):,} events). The ranking, the reasons, the
tiers and the percentiles are those of version {facts["version"]}, whose card and test metrics
apply to them; only what a probability means has changed.

| on the held-out half ({int((~fit).sum()):,} rows) | ECE | Brier |
|---|---|---|
| version {facts["version"]}'s calibrator | {before["ece"]:.4f} | {before["brier"]:.4f} |
| the new calibrator ({model.calibrator.method}) | {after["ece"]:.4f} | {after["brier"]:.4f} |

On this many rows, a perfectly calibrated model would show an ECE of
{after["ece_chance_median"]:.4f} by chance alone (median; 95th percentile
{after["ece_chance_p95"]:.4f}): an ECE under that cannot be told from perfect calibration.

One half can flatter or wrong a calibrator by luck, so the verdict is judged on {REPEATS}
halves drawn afresh (median, and 90% range):

| ECE over {REPEATS} halves | median (90% range) |
|---|---|
| version {facts["version"]}'s calibrator | {spread["before"].said()} |
| a calibrator refitted on the other half | {spread["after"].said()} |
| a perfectly calibrated model, by chance | {spread["floor"].said()} |

Verdict: {verdict(spread)}.

The local outcomes must be the task's outcome as the source model defines it; the registry
records where they came from (`local_labels`). For supportive planning only, never for
sanctions.
"""
