"""Is the champion still fit to serve? Drift of its inputs and score since training, and its
realized performance once outcomes are known, against thresholds, as ok / warning / alert.

Drift compares the cohort on a date with the reference stored in the model at training time
(`training.drift`): the population stability index (PSI) of every input and of the score, each
input's missing share, and, district by district, missing shares that jump (a district that
stopped recording something). Only the inputs some tree uses can change a score, so only they
raise the status; the others are reported.

Realized performance: for every month start whose label window has closed, from the start of
the model's own test period, the cohort is scored by the version that was champion on that
date (the registry's champion history), or, before the first promotion, by the monitored
version itself ("retrospective"), and compared with what happened.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from features.compute.builder import FeatureBuilder
from features.compute.labels import build_spine, cohort_spine
from features.core.errors import ConfigError, RegistryError
from features.core.html import esc, page
from features.core.io import atomic_path
from features.core.months import month_start, months_between
from features.residence import districts_on
from features.spec import FEATURES_BY_NAME
from features.storage.store import Store
from features.tasks import get_task
from models.registry import champion_at, champion_history, load_model
from models.risk_model import RiskModel
from training.drift import MAJOR_SHIFT, bin_shares, psi
from training.metrics import auroc, auroc_ci, capture_at_top, ece

STATUSES = ("ok", "warning", "alert")
EXPERIMENT = "sunshine-monitor-{task}"


@dataclass(frozen=True)
class MonitorConfig:
    psi_warning: float = 0.10
    psi_alert: float = MAJOR_SHIFT
    ece_warning: float = 0.05
    # a district's missing share of an input that rises by this much (and is no accident of
    # small numbers: z at least gap_z) is a recording gap
    gap_share: float = 0.20
    gap_z: float = 4.0
    min_rows: int = 100  # fewer rows than this are reported, never judged
    # a shift is judged only when it is no accident of small numbers: the χ² test of the
    # binned counts then and now below this p (a cohort of a few hundred moves by chance)
    psi_p: float = 0.001
    min_district_rows: int = 30
    months: int = 12  # the most recent matured months evaluated


def load_monitor_config(path: Path | None) -> MonitorConfig:
    if path is None:
        return MonitorConfig()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return MonitorConfig(**raw)
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the monitoring thresholds ({exc})") from None


@dataclass
class MonitorResult:
    task: str
    version: str
    as_of: dt.date
    status: str
    reasons: list[str]
    drift: pd.DataFrame
    gaps: pd.DataFrame
    performance: pd.DataFrame
    score_psi: float
    rows: int
    checked_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model_version": self.version,
            "as_of": str(self.as_of),
            "status": self.status,
            "reasons": self.reasons,
            "score_psi": self.score_psi,
            "rows": self.rows,
            "checked_at": self.checked_at,
        }


def chance(then: list[float], then_rows: int, now: np.ndarray, now_rows: int) -> float:
    """The p-value of the χ² test that the binned counts then and now come from one
    distribution (1.0 where only one bin is occupied: nothing can have moved)."""
    table = np.vstack([np.asarray(then, float) * then_rows, np.asarray(now, float) * now_rows])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _drift(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    ref = model.monitoring["features"]
    then_rows = int(model.monitoring.get("rows", 0))
    used = {model.features[i] for i in model.used}
    rows = []
    for name in model.features:
        entry = ref[name]
        now = bin_shares(entry, frame[name])
        rows.append(
            {
                "feature": name,
                "label_en": FEATURES_BY_NAME[name].label_en,
                "used": name in used,
                "psi": psi(entry["shares"], now),
                "p_value": chance(entry["shares"], then_rows, now, len(frame)),
                "missing_then": entry["shares"][-1],
                "missing_now": float(now[-1]),
            }
        )
    return pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)


def _gaps(
    model: RiskModel, frame: pd.DataFrame, districts: pd.Series, config: MonitorConfig
) -> pd.DataFrame:
    """Used inputs whose missing share jumped in a district since training."""
    then = model.monitoring.get("districts", {})
    used = [model.features[i] for i in model.used]
    now = frame[used].isna().groupby(districts.to_numpy()).mean()
    sizes = districts.value_counts()
    rows = []
    for district, ref in then.items():
        if (
            district not in now.index
            or min(sizes[district], ref["rows"]) < config.min_district_rows
        ):
            continue
        n1, n2 = ref["rows"], int(sizes[district])
        for name in used:
            p1, p2 = ref["missing"].get(name, 0.0), float(now.loc[district, name])
            pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
            z = (p2 - p1) / se
            if p2 - p1 >= config.gap_share and z >= config.gap_z:
                rows.append(
                    {
                        "district": district,
                        "feature": name,
                        "missing_then": p1,
                        "missing_now": p2,
                        "z": z,
                    }
                )
    return pd.DataFrame(rows, columns=["district", "feature", "missing_then", "missing_now", "z"])


def _deciles(y: np.ndarray, p: np.ndarray) -> str:
    """Observed against predicted by decile of the prediction, as `pred:obs` pairs."""
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, 10)
    return " ".join(f"{p[i].mean():.3f}:{y[i].mean():.3f}" for i in parts if len(i))


def _performance(
    store: Store, task: str, model: RiskModel, version: str, config: MonitorConfig
) -> tuple[pd.DataFrame, dict[str, float]]:
    """A row per matured month, and the months pooled (AUROC, ECE, rows, months)."""
    period = model.monitoring.get("period")
    declared = get_task(task)
    last = store.reference_date - dt.timedelta(days=declared.label_days)
    if not period:
        return pd.DataFrame(), {}
    first = dt.date.fromisoformat(period[0]).strftime("%Y-%m")
    if month_start(first) > last:
        return pd.DataFrame(), {}
    matured = months_between(first, last.strftime("%Y-%m"))[-config.months :]
    starts = [month_start(m) for m in matured]
    history = champion_history(task)
    models: dict[str, RiskModel] = {version: model}
    builder = FeatureBuilder(store)
    rows = []
    outcomes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for as_of in starts:
        when = dt.datetime.combine(as_of, dt.time(), dt.UTC)
        served = champion_at(history, when)
        used_version = served or version
        if used_version not in models:
            models[used_version] = load_model(task, version=used_version)[0]
        spine = build_spine(store, declared, [as_of])
        row: dict[str, Any] = {
            "as_of": str(as_of),
            "version": used_version,
            "retrospective": served is None,
            "rows": len(spine),
            "positives": int(spine["label"].sum()) if len(spine) else 0,
        }
        if len(spine):
            scored = models[used_version].score(builder.build(spine))
            y = spine["label"].to_numpy()
            p, raw = np.asarray(scored.probability), np.asarray(scored.raw_score)
            lo, hi = auroc_ci(y, raw, n_boot=200)
            capacity = models[used_version].tier_shares[0]
            row |= {
                "auroc": auroc(y, raw),
                "auroc_ci_low": lo,
                "auroc_ci_high": hi,
                "ece": ece(y, p),
                "mean_predicted": float(p.mean()),
                "observed": float(y.mean()),
                "precision_at_capacity": capture_at_top(y, raw, capacity)[0],
                "deciles": _deciles(y, p),
            }
            outcomes.append((y, p, raw))
        rows.append(row)
    if not outcomes:
        return pd.DataFrame(rows), {}
    y, p, raw = (np.concatenate(parts) for parts in zip(*outcomes, strict=True))
    pooled = {
        "auroc": auroc(y, raw),
        "ece": ece(y, p),
        "rows": float(len(y)),
        "months": float(len(outcomes)),
    }
    return pd.DataFrame(rows), pooled


def judged_by(name: str, present: set[str]) -> str:
    """The input whose shift is judged for `name`. An all-history aggregate of an event type
    grows with the registry's age by construction (the longer it has run, the more anyone's
    history holds), so it is judged by the same aggregate over the last 365 days, where a
    change in what people do shows and the registry's age does not; it is still reported.
    Any other input stands for itself."""
    spec = FEATURES_BY_NAME.get(name)
    if spec is not None and spec.kind == "window" and spec.window is None:
        twin = f"{spec.event_type}__{spec.agg}_365d"
        if twin in present:
            return twin
    return name


def _judge(
    model: RiskModel,
    drift: pd.DataFrame,
    gaps: pd.DataFrame,
    score_psi: tuple[float, float],
    pooled: dict[str, float],
    rows: int,
    config: MonitorConfig,
) -> tuple[str, list[str]]:
    """The status and its reasons; `score_psi` is the score's PSI and its χ² p-value."""
    level, reasons = 0, []

    def flag(severity: int, text: str) -> None:
        nonlocal level
        level = max(level, severity)
        reasons.append(f"{STATUSES[severity]}: {text}")

    if rows < config.min_rows:
        reasons.append(f"note: {rows} persons in the cohort, too few to judge drift")
    else:
        by_name = drift.set_index("feature")
        present = set(by_name.index)
        judged: dict[str, list[str]] = {}
        for name in drift.loc[drift.used, "feature"]:
            judged.setdefault(judged_by(name, present), []).append(name)
        for what, value, p in [("the score", *score_psi)] + [
            (
                f"{j} ({by_name.at[j, 'label_en']})"
                + (
                    ""
                    if names == [j]
                    else f", standing for {', '.join(n for n in names if n != j)}"
                ),
                by_name.at[j, "psi"],
                by_name.at[j, "p_value"],
            )
            for j, names in judged.items()
        ]:
            if p >= config.psi_p:  # within what chance moves a cohort of this size
                continue
            if value >= config.psi_alert:
                flag(2, f"PSI {value:.2f} of {what} (alert at {config.psi_alert})")
            elif value >= config.psi_warning:
                flag(1, f"PSI {value:.2f} of {what} (warning at {config.psi_warning})")
    for district, grp in gaps.groupby("district"):
        names = ", ".join(grp["feature"])
        flag(
            2,
            f"recording gap in {district}: missing share of {names} rose from "
            f"{grp['missing_then'].mean():.0%} to {grp['missing_now'].mean():.0%}",
        )
    if pooled.get("rows", 0) >= config.min_rows:
        months = int(pooled["months"])
        floor = model.metadata.get("test_metrics", {}).get("auroc_ci_low")
        if floor is not None and pooled["auroc"] < floor:
            flag(
                2,
                f"realized AUROC {pooled['auroc']:.3f} over {months} month(s) is below the "
                f"training test CI ({floor:.3f})",
            )
        if pooled["ece"] > config.ece_warning:
            flag(
                1,
                f"realized calibration error {pooled['ece']:.3f} over {months} month(s) "
                f"is above {config.ece_warning}",
            )
    return STATUSES[level], reasons


def run_monitor(
    store: Store,
    task: str,
    as_of: dt.date | None = None,
    config: MonitorConfig | None = None,
    version: str | None = None,
) -> tuple[MonitorResult, dict[str, float]]:
    config = config or MonitorConfig()
    model, facts = load_model(task, version=version)
    version = str(facts["version"])
    if not model.monitoring.get("features"):
        raise RegistryError(
            f"{facts['name']} version {version} was trained before models kept their reference "
            "distributions: retrain it (`sunshine train`) to monitor it"
        )
    as_of = as_of or store.reference_date
    spine = cohort_spine(store, get_task(task), as_of)
    frame = FeatureBuilder(store).build(spine)
    raw = model.raw_scores(frame) if len(frame) else np.array([])
    districts = districts_on(store.con, spine)
    drift = _drift(model, frame)
    gaps = _gaps(model, frame, districts.fillna("unknown"), config)
    score_entry = model.monitoring["score"]
    score_now = bin_shares(score_entry, pd.Series(raw))
    score_psi = psi(score_entry["shares"], score_now)
    score_p = chance(
        score_entry["shares"], int(model.monitoring.get("rows", 0)), score_now, len(raw)
    )
    perf, pooled = _performance(store, task, model, version, config)
    status, reasons = _judge(model, drift, gaps, (score_psi, score_p), pooled, len(frame), config)
    result = MonitorResult(
        task, version, as_of, status, reasons, drift, gaps, perf, score_psi, len(frame)
    )
    return result, pooled


def _table(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "<p>none</p>"
    return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")


def report_html(result: MonitorResult, pooled: dict[str, float]) -> str:
    reasons = "".join(f"<li>{esc(r)}</li>" for r in result.reasons) or "<li>none</li>"
    pooled_text = (
        f"<p>Pooled over the months: AUROC {pooled['auroc']:.3f}, ECE {pooled['ece']:.3f} "
        f"({int(pooled['rows']):,} rows).</p>"
        if pooled
        else "<p>No month's outcomes have matured since the model's test period began.</p>"
    )
    body = (
        f'<p>Status: <b class="{result.status}">{esc(result.status)}</b> for '
        f"{esc(result.task)} version {esc(result.version)}, cohort as of {result.as_of} "
        f"({result.rows:,} persons); score PSI {result.score_psi:.3f}; checked "
        f"{esc(result.checked_at)}.</p><ul>{reasons}</ul>"
        f"<h2>Inputs that moved most (PSI)</h2>{_table(result.drift.head(15))}"
        f"<h2>Recording gaps by district</h2>{_table(result.gaps)}"
        f"<h2>Realized performance</h2>{pooled_text}{_table(result.performance)}"
        "<p>deciles: mean predicted : observed rate, lowest decile first.</p>"
    )
    return page(f"模型监测 Model monitoring: {result.task}", body)


def write_outputs(result: MonitorResult, pooled: dict[str, float], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "status.json": json.dumps(
            {**result.summary(), "pooled": pooled}, indent=1, ensure_ascii=False
        ),
        "drift.csv": result.drift.to_csv(index=False),
        "gaps.csv": result.gaps.to_csv(index=False),
        "performance.csv": result.performance.to_csv(index=False),
        "report.html": report_html(result, pooled),
    }
    written = []
    for name, text in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def log_monitor_run(result: MonitorResult, pooled: dict[str, float], files: list[Path]) -> str:
    import mlflow

    from models.tracking import experiment_id

    with mlflow.start_run(
        experiment_id=experiment_id(EXPERIMENT.format(task=result.task)),
        run_name=f"monitor-{result.task}-{result.as_of}",
    ) as run:
        mlflow.set_tags(
            {
                "kind": "monitor",
                "task": result.task,
                "model_version": result.version,
                "status": result.status,
                "reasons": "\n".join(result.reasons)[:4000],
            }
        )
        mlflow.log_params({"as_of": str(result.as_of), "model_version": result.version})
        metrics = {
            "status_level": float(STATUSES.index(result.status)),
            "score_psi": result.score_psi,
            "max_feature_psi": float(result.drift[result.drift.used]["psi"].max()),
            "cohort_rows": float(result.rows),
            "recording_gaps": float(len(result.gaps)),
        }
        metrics |= {f"realized_{k}": v for k, v in pooled.items()}
        mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def monitor(
    store: Store,
    task: str,
    out: Path,
    as_of: dt.date | None = None,
    config: MonitorConfig | None = None,
    version: str | None = None,
) -> tuple[MonitorResult, str]:
    """Check a version (default: the champion) on the cohort of `as_of`, write the report,
    tables and status under `out`, and log the run to MLflow, where the service reads its
    verdict; returns the result and the run's id."""
    result, pooled = run_monitor(store, task, as_of, config, version)
    files = write_outputs(result, pooled, out)
    return result, log_monitor_run(result, pooled, files)


def latest_status(task: str) -> dict[str, Any] | None:
    """The newest monitoring run's verdict for a task, as the service shows it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT.format(task=task))
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        return None
    run = runs[0]
    tags, metrics = run.data.tags, run.data.metrics
    return {
        "status": tags.get("status"),
        "reasons": [r for r in tags.get("reasons", "").split("\n") if r],
        "model_version": tags.get("model_version"),
        "as_of": run.data.params.get("as_of"),
        "score_psi": metrics.get("score_psi"),
        "checked_at": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "run_id": run.info.run_id,
    }
