"""Batch roster benchmark: end-to-end rows/s, peak RSS and where the time goes.

    python benchmarks/roster_bench.py --data bench-out/registry-1000000-1 \\
        --mlflow bench-out/serve/mlflow.db --rows 100000 1000000

Rosters are drawn from the synthetic population. The first size is scored with the top 3
explanations per row, the others with scores only (--explain none). Each run is its own
process. Beside the explained run, the bare cost of LightGBM's pred_contrib is measured on the
same model and the same feature matrix, in the same process.

--reference-model adds a run of the first size with the issue's reference model size (400
trees of 31 leaves, fixed rounds, refit on the registry's own relapse cohort in the child; the
champion's calibrator and tiers are kept): the ratio to bare pred_contrib on a model whose
explanations cost what the issue assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import Meter, medians, report, run_child


def reference_booster(store, model, trees: int, leaves: int):
    """A fixed-size booster on the relapse cohort of one as-of date (training is not timed)."""
    import datetime as dt

    import lightgbm as lgb

    from features.compute.builder import FeatureBuilder
    from features.compute.labels import build_spine

    as_of = store.reference_date - dt.timedelta(days=400)
    spine = build_spine(store, "relapse", [as_of.replace(day=1)])
    spine = spine.sample(min(len(spine), 100_000), random_state=0)
    frame = FeatureBuilder(store).build(spine)
    X = model.prepare(frame)
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.05,
        "min_child_samples": 40,
        "verbose": -1,
        "num_threads": 2,
        "seed": 1,
    }
    return lgb.train(params, lgb.Dataset(X, spine["label"].to_numpy()), num_boost_round=trees)


def child(data: Path, db: Path, rows: int, explain: str, reference: bool = False) -> None:
    import dataclasses

    import mlflow

    from features.storage.store import Store
    from models.registry import load_model
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer
    from serving.scoring.interventions import load_interventions

    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model, facts = load_model("relapse")
    with Meter() as load:
        store = Store(data)
    if reference:
        model = dataclasses.replace(model, booster=reference_booster(store, model, 400, 31))
    persons = store.con.execute("SELECT person_id FROM persons").df().person_id
    if rows > len(persons):
        raise SystemExit(f"the population has {len(persons):,} persons; ask for fewer rows")
    roster = pd.DataFrame({"person_id": persons.sample(rows, random_state=0).to_numpy()})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "roster.parquet"
        roster.to_parquet(src)
        # every row scored, as the recorded figures were measured: a random sample of the
        # registry is mostly outside the relapse cohort
        job = RosterJob(
            src, "relapse", Path(tmp) / "out.parquet", explain=explain, include_out_of_cohort=True
        )
        scorer = RosterScorer(job, store, model, facts, load_interventions()["relapse"])
        with Meter() as m:
            summary = scorer.run()
        result = {
            "rows": summary.rows,
            "explain": explain,
            "model": "reference 400x31" if reference else "default",
            "load_s": round(load.wall, 1),
            "wall_s": round(m.wall, 1),
            "cpu_s": round(m.cpu, 1),
            "rows_per_s": round(summary.rows / m.wall),
            "split_s": {k: round(v, 1) for k, v in scorer.timings.items()},
        }
        if explain == "top3":
            sample = roster.head(20_000).assign(as_of=store.reference_date)
            X = model.prepare(scorer.builder.build(sample))
            t = time.perf_counter()
            model.booster.predict(X, pred_contrib=True)
            bare = len(X) / (time.perf_counter() - t)
            result["bare_pred_contrib_rows_per_s"] = round(bare)
            result["ratio_to_bare"] = round(result["rows_per_s"] / bare, 2)
            result["trees"] = model.booster.num_trees()
    report(result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--mlflow", type=Path, required=True, help="sqlite file with sunshine-relapse")
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--child", nargs=2, metavar=("ROWS", "EXPLAIN"))
    ap.add_argument("--reference-model", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; medians reported")
    args = ap.parse_args()
    if args.child:
        child(
            args.data,
            args.mlflow.resolve(),
            int(args.child[0]),
            args.child[1],
            args.reference_model,
        )
        return
    runs = [(n, "top3" if i == 0 else "none", []) for i, n in enumerate(args.rows)]
    if args.reference_model:
        runs.append((args.rows[0], "top3", ["--reference-model"]))
    out = []
    common_args = ["--data", str(args.data), "--mlflow", str(args.mlflow)]
    for n, explain, extra in runs:
        reps = [
            run_child(__spec__.name, [*common_args, "--child", str(n), explain, *extra])
            for _ in range(args.repeats)
        ]
        keys = ["wall_s", "rows_per_s", "peak_rss_mib"]
        if explain == "top3":
            keys += ["bare_pred_contrib_rows_per_s", "ratio_to_bare"]
        r = {k: reps[0][k] for k in ("rows", "explain", "model")}
        r |= {f"median_{k}": v for k, v in medians(reps, keys).items()} | {"runs": reps}
        out.append(r)
        print(json.dumps(r))
    Path(os.environ.get("ROSTER_BENCH_OUT", "roster_bench.json")).write_text(
        json.dumps(out, indent=2)
    )


if __name__ == "__main__":
    main()
