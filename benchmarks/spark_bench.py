"""The two feature engines side by side: DuckDB (one process) and Spark (`local[2]`).

    python benchmarks/spark_bench.py --persons 100000 200000 400000 --repeats 2

For each city size (generated once, reused), `sunshine features --task relapse` builds the
cohort, labels and all features at four quarterly as-of dates with each engine in turn, in
its own process; the wall time and the peak memory of the whole process tree (Spark's JVM is
a child of the command) are measured. On this 2-core machine the cores stay fixed while the
data doubles, so the figures show how each engine's cost grows with the data, not the weak
scaling of a cluster (cores growing with the data), which needs one.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleave  # noqa: E402

from features.synth import synthesize, write_population  # noqa: E402

DATES = ["2024-07-01", "2024-10-01", "2025-01-01", "2025-04-01"]
SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def tree_rss_mib(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def run(engine: str, data: Path, out: Path) -> dict:
    """One build; wall seconds and the peak RSS of the command and its children."""
    args = [SUNSHINE, "features", "--data", str(data), "--task", "relapse", "--out", str(out)]
    args += [a for d in DATES for a in ("--as-of", d)]
    if engine == "spark":
        args += ["--engine", "spark"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss_mib(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{engine} on {data} failed:\n{stderr[-3000:]}")
    return {"wall_s": round(time.perf_counter() - started, 2), "peak_tree_rss_mib": round(peak)}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("bench-out"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = {}
    for n in args.persons:
        data = args.work / f"registry-{n}-{args.seed}"
        if not (data / "dataset.json").exists():
            write_population(synthesize(n, args.seed), data, args.seed)
        runs = interleave(
            ["duckdb", "spark"],
            args.repeats,
            lambda e, n=n, data=data: run(e, data, args.work / f"features-{e}-{n}.parquet"),
        )
        results[n] = {
            e: {k: statistics.median(r[k] for r in rs) for k in rs[0]} | {"runs": rs}
            for e, rs in runs.items()
        }
    print(f"{'persons':>9} {'engine':<7} {'wall s':>8} {'s per 100k persons':>19} {'peak MiB':>9}")
    for n, by in results.items():
        for e in ("duckdb", "spark"):
            m = by[e]
            print(
                f"{n:>9,} {e:<7} {m['wall_s']:>8.1f} {m['wall_s'] / n * 1e5:>19.1f} "
                f"{m['peak_tree_rss_mib']:>9,.0f}"
            )
    (args.work / "spark_bench.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
