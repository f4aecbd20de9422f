"""Training benchmark for the relapse task, features excluded, plus prediction and explanation cost.

    python benchmarks/train_bench.py --sizes 100000 1000000

1. For each population size, features are built once and saved (not timed); a fresh process
   then times `training.trainer.train` (fit, calibration, evaluation, baselines, fairness,
   rolling origin, explanations) and reports its peak RSS.
2. Pyfunc prediction rows/s: the registered MLflow model scoring the test rows in one batch.
3. AUROC against explanation cost for three model sizes (trees x leaves), to pick the default.
4. With `--contended`: the same training beside a competing load (one busy process per CPU),
   OpenMP's spinning wait policy and the passive one the project sets, interleaved run by run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import pandas as pd

from benchmarks.common import Meter, interleave, medians, report, run_child
from training.config import load_config
from training.metrics import auroc
from training.splits import temporal_split

SIZES = [(100, 15, 0.1), (400, 31, 0.05), (800, 63, 0.03)]  # trees, leaves, learning rate


def frame_path(work: Path, persons: int) -> Path:
    return work / f"relapse-frame-{persons}.parquet"


def build_frame(work: Path, persons: int, seed: int) -> Path:
    from features.storage.store import Store
    from features.synth.city import synthesize, write_population
    from training.trainer import prepare_frame

    out = frame_path(work, persons)
    if out.exists():
        return out
    data = work / f"registry-{persons}-{seed}"
    if not (data / "dataset.json").exists():
        write_population(synthesize(persons, seed), data, seed)
    frame = prepare_frame(Store(data), load_config("relapse"))
    frame.to_parquet(out)
    return out


def child_train(path: Path) -> None:
    from models.training_run import model_factory
    from training.trainer import train

    frame = pd.read_parquet(path)
    cfg = load_config("relapse")
    with Meter() as m:
        result = train(frame, cfg, model_factory(cfg))
    report(
        {
            "rows": len(frame),
            "wall_s": round(m.wall, 1),
            "cpu_s": round(m.cpu, 1),
            "auroc": round(result.metrics["auroc"], 4),
            "trees": int(result.metrics["best_iteration"]),
        }
    )


def child_pyfunc(path: Path) -> None:
    import mlflow

    from models.registry import log_and_register
    from models.tracking import configure
    from models.training_run import model_factory
    from training.trainer import train

    frame = pd.read_parquet(path)
    cfg = load_config("relapse")
    result = train(frame, cfg, model_factory(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        configure()
        with mlflow.start_run():
            log_and_register(result.model, result.example, "card")
        pyfunc = mlflow.pyfunc.load_model("models:/sunshine-relapse@challenger")
        split = temporal_split(frame["as_of"], *cfg.split_dates())
        rows = frame.loc[split.test, result.features]
        rows = rows.astype({c: object for c in ("primary_substance",)})
        times = []
        for _ in range(3):
            t = time.perf_counter()
            pyfunc.predict(rows)
            times.append(time.perf_counter() - t)
        one = rows.head(1)
        single = []
        for _ in range(200):
            t = time.perf_counter()
            pyfunc.predict(one)
            single.append(time.perf_counter() - t)
    report(
        {
            "rows": len(rows),
            "batch_rows_per_s": round(len(rows) / statistics.median(times)),
            "single_row_ms_median": round(1000 * statistics.median(single), 2),
        }
    )


def child_sizes(path: Path) -> None:
    frame = pd.read_parquet(path)
    cfg = load_config("relapse")
    X = frame[cfg.model_features()]
    y = frame["label"].to_numpy()
    split = temporal_split(frame["as_of"], *cfg.split_dates())
    fit = split.train | split.valid
    sample = X[split.test].head(5000)
    rows = []
    from training.trainer import _params

    for trees, leaves, lr in SIZES:
        params = {
            **_params(dataclasses.replace(cfg), True, y[fit]),
            "num_leaves": leaves,
            "max_depth": -1,
            "learning_rate": lr,
        }
        booster = lgb.train(params, lgb.Dataset(X[fit], y[fit]), num_boost_round=trees)
        a = auroc(y[split.test], booster.predict(X[split.test], raw_score=True))
        speeds = {}
        for label, kw in (
            ("pred_contrib", {"pred_contrib": True}),
            ("predict", {"raw_score": True}),
        ):
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                booster.predict(sample, num_threads=1, **kw)
                runs.append(time.perf_counter() - t)
            speeds[label] = len(sample) / statistics.median(runs)
        rows.append(
            {
                "trees": trees,
                "leaves": leaves,
                "test_auroc": round(a, 4),
                "pred_contrib_rows_per_s": round(speeds["pred_contrib"]),
                "pred_contrib_ms_per_row": round(1000 / speeds["pred_contrib"], 3),
                "predict_rows_per_s": round(speeds["predict"]),
            }
        )
    report({"sizes": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("bench-out"))
    ap.add_argument("--child", nargs=2, metavar=("KIND", "FRAME"))
    ap.add_argument("--contended", action="store_true", help="only the wait-policy comparison")
    args = ap.parse_args()
    if args.child:
        kind, path = args.child
        {"train": child_train, "pyfunc": child_pyfunc, "sizes": child_sizes}[kind](Path(path))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    if args.contended:
        contended(build_frame(args.work, min(args.sizes), args.seed), args.repeats)
        return
    results = {}
    for n in args.sizes:
        path = build_frame(args.work, n, args.seed)
        runs = [
            run_child(__spec__.name, ["--child", "train", str(path)]) for _ in range(args.repeats)
        ]
        med = {
            k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mib")
        }
        results[f"train_{n}"] = {**runs[0], **med}
        print(
            f"train relapse, {n:,} persons ({runs[0]['rows']:,} rows, {runs[0]['trees']} trees): "
            f"{med['wall_s']:.0f} s wall, {med['cpu_s']:.0f} s CPU, "
            f"peak RSS {med['peak_rss_mib']:,.0f} MiB, "
            f"test AUROC {runs[0]['auroc']}"
        )
    small = build_frame(args.work, min(args.sizes), args.seed)
    py = run_child(__spec__.name, ["--child", "pyfunc", str(small)])
    results["pyfunc"] = py
    print(
        f"pyfunc predict: {py['batch_rows_per_s']:,} rows/s in one batch of {py['rows']:,}; "
        f"single row {py['single_row_ms_median']} ms (median of 200)"
    )
    sizes = run_child(__spec__.name, ["--child", "sizes", str(small)])
    results["model_sizes"] = sizes["sizes"]
    print(pd.DataFrame(sizes["sizes"]).to_string(index=False))
    (args.work / "train_bench.json").write_text(json.dumps(results, indent=2))


def contended(path: Path, repeats: int) -> None:
    """Training beside a busy process on every CPU, with each OpenMP wait policy in turn."""
    import subprocess
    import sys

    from features.core.cpus import usable_cpus

    busy = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nend = time.time() + 1800\nwhile time.time() < end: pass",
            ]
        )
        for _ in range(usable_cpus())
    ]
    try:
        runs = interleave(
            ["ACTIVE", "PASSIVE"],
            repeats,
            lambda policy: run_child(
                __spec__.name, ["--child", "train", str(path)], {"OMP_WAIT_POLICY": policy}
            ),
        )
    finally:
        for p in busy:
            p.kill()
    for policy, rs in runs.items():
        m = medians(rs, ["wall_s", "cpu_s"])
        print(
            f"OMP_WAIT_POLICY={policy} beside {len(busy)} busy processes: {m['wall_s']:.0f} s "
            f"wall, {m['cpu_s']:.0f} s CPU (median of {repeats}; {rs[0]['rows']:,} rows)"
        )


if __name__ == "__main__":
    main()
