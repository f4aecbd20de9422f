"""`sunshine effects`: learn which support lowers whose risk, from the offers recorded, log it to
MLflow and register the deployable effects model (`sunshine-effects-<task>`) behind its gate.

The rows are the task's cohort on its as_of dates, in the encoding of the task's champion risk
model: the effects are estimated with the inputs the service already holds for each person, and
the risk ranking they are compared with is the champion's own. The "current rule" is the
service's: the option is suggested when a factor it answers is among the five that raise the
person's risk most (`SupportOption.answers`), highest risk first."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

import features
import models
import training
from features.compute.builder import FeatureBuilder
from features.compute.labels import build_spine, default_dates
from features.compute.offers import offered
from features.core.errors import InputError
from features.residence import districts_on
from features.storage.store import Store
from features.tasks import SupportOption, get_task
from models.effects_model import ARTIFACT_KEY, EffectsModel, OptionFacts, effects_name
from models.registry import CHAMPION, PIP_REQUIREMENTS, load_model
from models.risk_model import RiskModel
from models.tracking import experiment_id
from training.effects import EffectsData, OptionEffects, Refused, estimate
from training.explain import contributions
from training.fairness import age_band

RULE_TOP = 5  # the service suggests support for the five factors raising a risk most
HELD_OUT = 0.5  # the share of persons the effect model never sees


@dataclass
class EffectsRun:
    task: str
    risk_version: str
    data: EffectsData
    results: dict[str, OptionEffects] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    # the rows of `data` each option was judged on (not those it may still act for)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    version: int | None = None
    promoted: bool = False
    run_id: str = ""


def _raising(model: RiskModel, X: np.ndarray) -> np.ndarray:
    """Each row's RULE_TOP largest factors as feature positions, -1 where one lowers the risk:
    computed once, since every option's rule reads the same factors."""
    contrib = contributions(model.booster, X)[:, :-1]
    top = np.argsort(-contrib, axis=1)[:, :RULE_TOP]
    return np.where(np.take_along_axis(contrib, top, axis=1) > 0, top, -1)


def _rule(model: RiskModel, raising: np.ndarray, option: SupportOption) -> np.ndarray:
    """Whether the service's rule suggests the option to each row: a factor it answers is
    among those raising the row's risk most."""
    # one more entry, False, for the -1 of a factor that lowers the risk
    answers = np.array([option.answers(f) for f in model.features] + [False])
    return np.asarray(answers[raising].any(axis=1), bool)


def effects_data(
    store: Store, task: str, model: RiskModel, seed: int = 0
) -> tuple[EffectsData, pd.DataFrame]:
    """The cohort on the task's as_of dates in the champion's encoding, with its labels, risk
    scores and reporting groups; and the spine it came from."""
    spine = build_spine(store, task, default_dates(store, get_task(task)))
    if spine.empty:
        raise InputError(f"{store.name}: the {task} cohort is empty on every as_of date")
    frame = FeatureBuilder(store).build(spine)
    X = model.prepare(frame)
    unused = np.setdiff1d(np.arange(len(model.features)), model.used)
    X[:, unused] = np.nan  # the service computes only what the risk model uses
    persons = frame["person_id"].to_numpy()
    unique = pd.unique(persons)
    held = np.random.default_rng(seed).permutation(unique)[: int(len(unique) * HELD_OUT)]
    groups = pd.DataFrame(
        {
            "district": districts_on(store.con, frame).to_numpy(),
            "age_band": age_band(frame["age_years"]).astype(object).to_numpy(),
        }
    )
    data = EffectsData(
        X=X,
        y=frame["label"].to_numpy(int),
        persons=persons,
        as_of=pd.to_datetime(frame["as_of"]).to_numpy(),
        risk=model.raw_score(X),
        held_out=np.isin(persons, held),
        groups=groups,
        modifiers=[],
    )
    return data, spine


def estimate_options(
    store: Store,
    task: str,
    model: RiskModel,
    codes: list[str],
    capacity: float = 0.10,
    seed: int = 0,
    risk_version: str = "",
    strict: bool = False,
) -> EffectsRun:
    """Each option in `codes` estimated on the task's cohort in `model`'s encoding, without
    logging anything; an option the data cannot tell is listed with why, or, `strict`, raised
    (Refused)."""
    options = {o.code: o for o in get_task(task).support}
    data, spine = effects_data(store, task, model, seed)
    offers = offered(store, spine, codes)
    raising = _raising(model, data.X)
    run = EffectsRun(task, risk_version, data)
    for code in codes:
        # a person the option may still act for cannot show what offering it would change
        rows = run.rows[code] = ~offers.acting[code]
        one = _rows(data, rows, model, modifiers(model, options[code]))
        rule = _rule(model, raising[rows], options[code])
        try:
            run.results[code] = estimate(
                one, offers.offered[code][rows], code, rule, capacity, seed
            )
        except Refused as exc:
            if strict:
                raise
            run.refused[code] = str(exc)
    return run


def run_effects(
    store: Store,
    task: str,
    option: str | None = None,
    capacity: float = 0.10,
    out: Path | None = None,
    seed: int = 0,
    force: str | None = None,
) -> EffectsRun:
    """Estimate every option of the task (or one), log the run, register the effects model and
    make it the champion when at least one option passes the gate; `force` (the reason, kept
    in the registry) serves every estimated option and crowns it anyway, as for a test city
    too small to show anything. Raises Refused for a single option the data cannot tell, and
    InputError when no option can be estimated."""
    options = {o.code: o for o in get_task(task).support}
    if option is not None and option not in options:
        raise InputError(f"{task} has no support option {option!r} (options: {', '.join(options)})")
    model, facts = load_model(task)
    chosen = [option] if option else list(options)
    run = estimate_options(
        store, task, model, chosen, capacity, seed, str(facts["version"]), option is not None
    )
    if not run.results:
        raise InputError(
            f"{task}: no support option can be estimated: " + "; ".join(run.refused.values())
        )
    effects = EffectsModel(
        task,
        run.risk_version,
        list(model.features),
        capacity,
        {
            code: _facts(r, modifiers(model, options[code]), bool(force))
            for code, r in run.results.items()
        },
    )
    _log(run, effects, capacity, out, force)
    return run


def modifiers(model: RiskModel, option: SupportOption) -> list[int]:
    """The option's own factors among the risk model's inputs: the columns the effect may vary
    by, beside the risk score."""
    used = set(model.used.tolist())
    return [i for i, f in enumerate(model.features) if i in used and option.answers(f)]


def _rows(data: EffectsData, rows: np.ndarray, model: RiskModel, columns: list[int]) -> EffectsData:
    """The rows an option is judged on, the columns its effect may vary by, and its key factor
    as a caseworker reads it among the groups: whether the first of those columns shows
    anything (a count above 0, a yes) or nothing."""
    groups = data.groups.copy()
    if columns:
        key = np.nan_to_num(data.X[:, columns[0]]) > 0
        groups[model.features[columns[0]]] = np.where(key, "some", "none")
    return EffectsData(
        data.X[rows],
        data.y[rows],
        data.persons[rows],
        data.as_of[rows],
        data.risk[rows],
        data.held_out[rows],
        groups[rows].reset_index(drop=True),
        columns,
    )


def _facts(r: OptionEffects, modifiers: list[int], force: bool) -> OptionFacts:
    prevented = float(r.policies.set_index("policy").loc["benefit", "prevented_per_1000"])
    return OptionFacts(
        r.code,
        modifiers,
        r.ate,
        r.offered,
        r.detectable,
        r.verdict(),
        prevented,
        r.booster if force or (r.detectable and r.serve) else None,
    )


def tables(r: OptionEffects) -> dict[str, pd.DataFrame]:
    """One option's tables, as written to the output folder and logged to the run."""
    return {
        "by_group": r.by_group,
        "calibration": r.calibration,
        "qini": r.qini,
        "policies": r.policies,
        "excluded": r.excluded,
    }


def summary(run: EffectsRun) -> pd.DataFrame:
    """One row per option: its offers, average effect, heterogeneity, policies and verdict."""
    rows = []
    for code, r in run.results.items():
        pol = r.policies.set_index("policy")["prevented_per_1000"]
        rows.append(
            {
                "option": code,
                "rows": r.rows,
                "offered": r.offered,
                "outside_overlap": len(r.excluded),
                "effect": r.ate[0],
                "effect_low": r.ate[1],
                "effect_high": r.ate[2],
                "qini_area": r.qini_area[0],
                "qini_low": r.qini_area[1],
                "qini_high": r.qini_area[2],
                **{f"prevented_{p}": pol[p] for p in pol.index},
                "benefit_minus_risk": r.benefit_vs_risk[0],
                "verdict": r.verdict(),
            }
        )
    for code, why in run.refused.items():
        rows.append({"option": code, "verdict": "refused: " + why})
    return pd.DataFrame(rows)


def _write(run: EffectsRun, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    summary(run).to_csv(folder / "summary.csv", index=False)
    for code, r in run.results.items():
        for name, table in tables(r).items():
            table.to_csv(folder / f"{code}.{name}.csv", index=False)


def _log(
    run: EffectsRun, effects: EffectsModel, capacity: float, out: Path | None, force: str | None
) -> None:
    """The run (parameters, each option's figures and tables), the registered model, and the
    gate's decision, which names the options it lets serve."""
    from training.plots import close, effect_figures

    now = dt.datetime.now(dt.UTC)
    exp = experiment_id(effects_name(run.task))
    name = f"{run.task}-effects-{now:%Y%m%d-%H%M%S}"
    with mlflow.start_run(experiment_id=exp, run_name=name) as active:
        run.run_id = active.info.run_id
        mlflow.set_tags(
            {"task": run.task, "risk_version": run.risk_version, "forced_reason": force or ""}
        )
        mlflow.log_params(
            {
                "capacity": capacity,
                "rows": len(run.data.y),
                "persons": len(pd.unique(run.data.persons)),
                "held_out_share": HELD_OUT,
                "refused": "; ".join(run.refused) or "none",
            }
        )
        metrics = {}
        for code, r in run.results.items():
            metrics.update(
                {
                    f"{code}.effect": r.ate[0],
                    f"{code}.effect_low": r.ate[1],
                    f"{code}.effect_high": r.ate[2],
                    f"{code}.qini_area": r.qini_area[0],
                    f"{code}.benefit_minus_risk": r.benefit_vs_risk[0],
                    f"{code}.served": float(code in effects.served),
                }
            )
            for p in r.policies.itertuples():
                metrics[f"{code}.prevented_{p.policy}"] = p.prevented_per_1000
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "tables"
            _write(run, folder)
            mlflow.log_artifacts(str(folder), "effects")
            for code, r in run.results.items():
                for name, fig in effect_figures(code, r.qini, r.calibration).items():
                    mlflow.log_figure(fig, f"effects/{code}.{name}.png")
                    close(fig)
            effects.save(Path(tmp) / "model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("effects_entry.py")),
                artifacts={ARTIFACT_KEY: str(Path(tmp) / "model")},
                code_paths=[
                    str(Path(str(p.__file__)).parent) for p in (features, training, models)
                ],
                signature=effects.signature(),
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=effects_name(run.task),
            )
    run.version = int(info.registered_model_version)
    if effects.served:
        mlflow.MlflowClient().set_registered_model_alias(
            effects_name(run.task), CHAMPION, str(run.version)
        )
        run.promoted = True
    if out is not None:
        _write(run, out)
