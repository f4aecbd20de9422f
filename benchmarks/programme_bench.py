"""Programme indicators and model monitoring on a large synthetic city.

    python benchmarks/programme_bench.py --persons 1000000 --repeats 2

The city is synthesized once into WORK/registry-N-1 (reused by later runs); a relapse model is
trained once on a 20,000-person city of the same generator into WORK/programme-mlflow.db (the
monitored model's size does not depend on the city it watches). Each measured run is its own
process, as a user's command would be: loading and validating the registry, then 24 months of
indicators (`features.indicators.monthly.compute` and the ranking), or one task's monitoring (drift,
recording gaps, realized performance for every matured month). Medians and peak RSS reported.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.common import Meter, arguments, interleave, medians, report, run_child


def city(work: Path, persons: int) -> Path:
    from features.synth.city import synthesize, write_population

    path = work / f"registry-{persons}-1"
    if not (path / "events.parquet").exists():
        write_population(synthesize(persons, 1), path, 1)
    return path


def model(work: Path) -> str:
    """A trained relapse model in a store of its own; returns the tracking URI."""
    uri = f"sqlite:///{(work / 'programme-mlflow.db').resolve()}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from models.registry import list_versions

    if list_versions(["relapse"]).empty:
        from models.training_run import train_task

        train_task(city(work, 20_000), "relapse")
    return uri


def child(kind: str, data: Path, uri: str) -> None:
    from features.core.months import month_range
    from features.indicators.inputs import load_indicator_config, read_population
    from features.indicators.ranking import indicator_table
    from features.storage.store import Store

    with Meter() as total:
        with Meter() as load:
            store = Store(data)
        with Meter() as work:
            if kind == "indicators":
                config = load_indicator_config()
                months = month_range(None, None, store.reference_date)
                rows = len(indicator_table(store, months, config, read_population()))
            else:
                os.environ["MLFLOW_TRACKING_URI"] = uri
                from models.monitoring import run_monitor

                result, _ = run_monitor(store, "relapse", version="1")
                rows = result.rows + int(result.performance["rows"].sum())
    report(
        {
            "kind": kind,
            "wall_s": round(total.wall, 1),
            "cpu_s": round(total.cpu, 1),
            "load_s": round(load.wall, 1),
            "work_s": round(work.wall, 1),
            "work_cpu_s": round(work.cpu, 1),
            "rows": rows,
        }
    )


def main() -> None:
    ap = arguments(1_000_000, "bench-out", repeats=2)
    ap.add_argument("--child", choices=["indicators", "monitor"])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--uri")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.uri)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = city(args.work, args.persons)
    uri = model(args.work)
    runs = interleave(
        ["indicators", "monitor"],
        args.repeats,
        lambda kind: run_child(__spec__.name, ["--child", kind, "--data", str(data), "--uri", uri]),
    )
    keys = ["wall_s", "cpu_s", "load_s", "work_s", "work_cpu_s", "peak_rss_mib"]
    print(f"{args.persons:,} persons, {args.repeats} runs each, medians:")
    for kind, results in runs.items():
        m = medians(results, keys)
        print(f"  {kind}: " + ", ".join(f"{k} {v:,.1f}" for k, v in m.items()))
        print(f"    runs: {[r['wall_s'] for r in results]}")


if __name__ == "__main__":
    main()
