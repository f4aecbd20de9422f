"""Which support helps whom, scored against the synthetic city's truth.

    python -m benchmarks.effects_bench --persons 100000 --cities 10 --city-persons 20000

1. One city of `--persons`: the relapse risk model is trained and crowned, `sunshine effects`
   estimates every option (in a private MLflow store), and each option is scored on the
   held-out persons against the truth file (`truth/support_relapse.parquet`), which nothing
   in training reads:
   - Spearman between the estimated and the true benefit, the benefit as it stood in the
     month of the offer (`window_effects(at_offer=True)`): the ranking a caseworker could make
     that day;
   - the outcomes each policy truly prevents per 1,000 at capacity 10% (the truth over the
     year as it came): by estimated benefit, by risk, by the current rule, and the oracle
     that ranks by true benefit;
   - whether an option that helps nobody is reported as having no detectable effect;
   - the ceiling: the same two figures for a model fitted on the true benefit itself (the
     persons the effect model was fitted on), with every input the registry gives the risk
     model: what any estimate from those inputs could reach, since the truth also depends on
     what the registry cannot show on the review's day (a relapse no one has seen yet, this
     month's events).
2. Coverage: `--cities` further cities of `--city-persons` (seeds 101...), each estimated with
   the first city's risk model (only its encoding and its ranking are used), and how often
   the 95% interval of each option's average effect holds the true average over the rows it
   was estimated on.

Medians of the timings and the peak memory are reported. Prints one JSON line per part and a
table; `--out FILE` also writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from benchmarks.common import peak_rss_mib
from features.storage.store import Store
from features.synth.city import RELAPSE_FOUND, TRUTH_DIR, synthesize, write_population
from features.synth.support import SUPPORT_EFFECTS, window_effects
from features.tasks import get_task

TASK = "relapse"
CAPACITY = 0.10
COVERAGE_OPTIONS = (
    "skills_training_or_a_sunshine_project_job_placement",
    "social_worker_home_visit",
    "relapse_prevention_counselling",
)


def _top(key: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    chosen = np.zeros(len(key), bool)
    for day in np.unique(as_of):
        rows = np.flatnonzero(as_of == day)
        k = int(round(CAPACITY * len(rows)))
        chosen[rows[np.argsort(-key[rows], kind="stable")[:k]]] = True
    return chosen


def _truth(city: Path, data, code: str, rows: np.ndarray):
    truth = pd.read_parquet(city / TRUTH_DIR / f"support_{TASK}.parquet")
    snap = pd.DataFrame({"person_id": data.persons[rows], "as_of": data.as_of[rows]})
    year = window_effects(truth, snap, code, RELAPSE_FOUND)
    at_offer = window_effects(truth, snap, code, RELAPSE_FOUND, at_offer=True)
    return year, at_offer


def _ceiling(data, rows: np.ndarray, r, at_offer: np.ndarray) -> np.ndarray:
    """A model of the true benefit at the offer, fitted on the rows the effect model was
    fitted on, with every registry input and the risk score: its predictions for the held-out
    rows, the best ranking those inputs allow."""
    X = np.column_stack([data.X[rows], data.risk[rows]])
    fit = ~data.held_out[rows]
    fit[r.excluded.index.to_numpy()] = False
    model = lgb.LGBMRegressor(
        n_estimators=300, learning_rate=0.05, min_child_samples=50, verbose=-1, random_state=0
    )
    return model.fit(X[fit], at_offer[fit]).predict(X[r.held_out_index])


def one_city(work: Path, persons: int, seed: int) -> dict:
    from models.effects_run import run_effects
    from models.registry import promote
    from models.tracking import configure
    from models.training_run import train_task

    os.environ["SUNSHINE_HOME"] = str(work)
    configure()
    city = work / "city"
    write_population(synthesize(persons, seed), city, seed)
    t0 = time.perf_counter()
    train_task(city, TASK)
    promote(TASK, force=True, reason="benchmark")
    t1 = time.perf_counter()
    store = Store(city)
    run = run_effects(store, TASK, capacity=CAPACITY, out=work / "tables")
    t2 = time.perf_counter()
    options = {o.code: o for o in get_task(TASK).support}
    rows_out = []
    for code, r in run.results.items():
        rows = run.rows[code]
        year, at_offer = _truth(city, run.data, code, rows)
        idx = r.held_out_index
        as_of = run.data.as_of[rows][idx]
        risk = run.data.risk[rows][idx]
        real = (
            SUPPORT_EFFECTS[TASK][code].if_true != 0 or SUPPORT_EFFECTS[TASK][code].otherwise != 0
        )
        ceiling = _ceiling(run.data, rows, r, at_offer)
        prevented = {
            name: -1000 * float((_top(key, as_of) * year[idx]).mean())
            for name, key in (
                ("benefit", -r.held_out_estimates),
                ("risk", risk),
                ("oracle", -at_offer[idx]),
                ("hindsight", -year[idx]),
                ("ceiling", -ceiling),
            )
        }
        rho, rho_ceiling = (
            (spearmanr(key, at_offer[idx]).statistic if real else float("nan"))
            for key in (r.held_out_estimates, ceiling)
        )
        share = {
            k: prevented[k] / prevented["oracle"] if prevented["oracle"] > 0 else float("nan")
            for k in ("benefit", "ceiling")
        }
        rows_out.append(
            {
                "option": code,
                "real_effect": real,
                "true_average": float(np.delete(year, r.excluded.index.to_numpy()).mean())
                if len(r.excluded)
                else float(year.mean()),
                "estimate": r.ate[0],
                "low": r.ate[1],
                "high": r.ate[2],
                "detectable": r.detectable,
                "spearman": float(rho),
                "spearman_ceiling": float(rho_ceiling),
                **{f"prevented_{k}": v for k, v in prevented.items()},
                "benefit_share_of_oracle": share["benefit"],
                "ceiling_share_of_oracle": share["ceiling"],
                "served": r.detectable and r.serve,
                "rule_label": options[code].en,
            }
        )
    return {
        "part": "city",
        "persons": persons,
        "seed": seed,
        "rows": len(run.data.y),
        "train_seconds": round(t1 - t0, 1),
        "effects_seconds": round(t2 - t1, 1),
        "options": rows_out,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def coverage(work: Path, cities: int, persons: int) -> dict:
    """Each further city estimated with the first city's risk model; the share of intervals
    holding the true average effect over the rows each was estimated on."""
    from models.effects_run import estimate_options
    from models.registry import load_model

    model, _ = load_model(TASK)
    hits: dict[str, list[bool]] = {c: [] for c in COVERAGE_OPTIONS}
    seconds = []
    for k in range(cities):
        seed = 101 + k
        city = work / f"cover-{seed}"
        write_population(synthesize(persons, seed), city, seed)
        store = Store(city)
        t0 = time.perf_counter()
        run = estimate_options(store, TASK, model, list(COVERAGE_OPTIONS), seed=seed, strict=True)
        for code, r in run.results.items():
            year, _ = _truth(city, run.data, code, run.rows[code])
            kept = np.ones(len(year), bool)
            kept[r.excluded.index.to_numpy()] = False
            true = float(year[kept].mean())
            hits[code].append(r.ate[1] <= true <= r.ate[2])
        seconds.append(time.perf_counter() - t0)
    return {
        "part": "coverage",
        "cities": cities,
        "persons": persons,
        "coverage": {c: float(np.mean(h)) for c, h in hits.items()},
        "all_options": float(np.mean([x for h in hits.values() for x in h])),
        "median_seconds_per_city": round(statistics.median(seconds), 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cities", type=int, default=10)
    ap.add_argument("--city-persons", type=int, default=20_000)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = [one_city(work, a.persons, a.seed)]
        print(json.dumps(results[-1]), flush=True)
        if a.cities:
            results.append(coverage(work, a.cities, a.city_persons))
            print(json.dumps(results[-1]), flush=True)
    table = pd.DataFrame(results[0]["options"]).drop(columns="rule_label")
    print(table.round(4).to_string(index=False))
    if a.out:
        a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
