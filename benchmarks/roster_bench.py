"""Batch roster benchmark: end-to-end rows/s, peak RSS and where the time goes.

    python benchmarks/roster_bench.py --data bench-out/registry-1000000-1 \\
        --mlflow bench-out/serve/mlflow.db --rows 100000 1000000

Rosters are drawn from the synthetic population. The first size is scored with the top 3
explanations per row, the others with scores only (--explain none). Each run is its own
process. Beside the explained run, the bare cost of LightGBM's pred_contrib is measured on the
same model and the same feature matrix, in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Meter, report, run_child  # noqa: E402


def child(data: Path, db: Path, rows: int, explain: str) -> None:
    import mlflow

    from features.store import Store
    from models.registry import load_model
    from serving.batch import RosterJob, RosterScorer
    from serving.scoring import load_interventions

    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model, facts = load_model("relapse")
    with Meter() as load:
        store = Store(data)
    persons = store.con.execute("SELECT person_id FROM persons").df().person_id
    if rows > len(persons):
        raise SystemExit(f"the population has {len(persons):,} persons; ask for fewer rows")
    roster = pd.DataFrame({"person_id": persons.sample(rows, random_state=0).to_numpy()})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "roster.parquet"
        roster.to_parquet(src)
        job = RosterJob(src, "relapse", Path(tmp) / "out.parquet", explain=explain)
        scorer = RosterScorer(job, store, model, facts, load_interventions())
        with Meter() as m:
            summary = scorer.run()
        result = {
            "rows": summary.rows,
            "explain": explain,
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
    args = ap.parse_args()
    if args.child:
        child(args.data, args.mlflow.resolve(), int(args.child[0]), args.child[1])
        return
    out = []
    for i, n in enumerate(args.rows):
        explain = "top3" if i == 0 else "none"
        r = run_child(
            __file__,
            ["--data", str(args.data), "--mlflow", str(args.mlflow), "--child", str(n), explain],
        )
        out.append(r)
        print(json.dumps(r))
    Path(os.environ.get("ROSTER_BENCH_OUT", "roster_bench.json")).write_text(
        json.dumps(out, indent=2)
    )


if __name__ == "__main__":
    main()
