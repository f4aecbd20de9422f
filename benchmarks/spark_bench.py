"""The two feature engines side by side: DuckDB (one process) and Spark (`local[2]`).

    python benchmarks/spark_bench.py --persons 100000 200000 400000 --repeats 2
    python benchmarks/spark_bench.py --persons 1000000 --shards 1 2 4 --repeats 1

For each city size (generated once, reused), `sunshine features --task relapse` builds the
cohort, labels and all features at four quarterly as-of dates with each engine in turn, in
its own process; the wall time, the CPU time and the peak memory of the whole process tree
(Spark's JVM is a child of the command) are measured.

`--shards K` makes a city of K independent populations of `--persons` each (seeds 1..K, ids
kept apart by a prefix), as folders of Parquet files: the same kind of data, K times over,
for the time per event as the data grows. DuckDB's store reads one file per table, so it
runs on the one-shard city only. On this 2-core machine the cores stay fixed while the data
grows, so the figures show how each engine's cost grows with the data, not the weak scaling
of a cluster (cores growing with the data), which needs one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import interleave
from features.synth.city import synthesize, write_population

DATES = ["2024-07-01", "2024-10-01", "2025-01-01", "2025-04-01"]
SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def tree_rss_mib(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def shard(n: int, seed: int, work: Path) -> Path:
    """One population of n persons, its ids prefixed by its seed."""
    path = work / f"shard-{n}-{seed}"
    if not (path / "dataset.json").exists():
        pop = synthesize(n, seed)
        prefix, empty = pa.scalar(f"S{seed}"), pa.scalar("")

        def renamed(table: pa.Table) -> pa.Table:
            ids = pc.binary_join_element_wise(prefix, table["person_id"], empty)
            return table.set_column(table.schema.get_field_index("person_id"), "person_id", ids)

        pop = dataclasses.replace(pop, persons=renamed(pop.persons), events=renamed(pop.events))
        write_population(pop, path, seed)
    return path


def city(n: int, shards: int, seed: int, work: Path) -> Path:
    """The registry of `shards` populations: one shard's own folder, or a folder whose
    persons.parquet and events.parquet are folders of links to the shards' files."""
    parts = [shard(n, seed + k, work) for k in range(shards)]
    if shards == 1:
        return parts[0]
    path = work / f"city-{n}x{shards}-{seed}"
    for table in ("persons", "events"):
        folder = path / f"{table}.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(parts):
            link = folder / f"part-{k}.parquet"
            if not link.exists():
                link.symlink_to((part / f"{table}.parquet").resolve())
    (path / "dataset.json").write_text((parts[0] / "dataset.json").read_text())
    return path


def events_in(data: Path) -> int:
    folder = data / "events.parquet"
    files = sorted(folder.iterdir()) if folder.is_dir() else [folder]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def run(engine: str, data: Path, out: Path) -> dict:
    """One build; wall seconds, CPU seconds and the peak RSS of the command and its
    children (each process's CPU as last seen, polled every 0.2 s)."""
    args = [SUNSHINE, "features", "--data", str(data), "--task", "relapse", "--out", str(out)]
    args += [a for d in DATES for a in ("--as-of", d)]
    if engine == "spark":
        args += ["--engine", "spark"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak, cpu = psutil.Process(proc.pid), 0.0, {}
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss_mib(watched))
            for p in [watched, *watched.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{engine} on {data} failed:\n{stderr[-3000:]}")
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "cpu_s": round(sum(cpu.values()), 1),
        "peak_tree_rss_mib": round(peak),
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    ap.add_argument("--shards", type=int, nargs="+", default=[1])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("bench-out"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = {}
    for n in args.persons:
        for k in args.shards:
            data = city(n, k, args.seed, args.work)
            engines = ["duckdb", "spark"] if k == 1 else ["spark"]
            runs = interleave(
                engines,
                args.repeats,
                lambda e, n=n, k=k, data=data: run(
                    e, data, args.work / f"features-{e}-{n}x{k}.parquet"
                ),
            )
            results[n * k] = {
                e: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"runs": rs}
                for e, rs in runs.items()
            } | {"events": events_in(data)}
    print(
        f"{'persons':>9} {'events':>11} {'engine':<7} {'wall s':>8} {'CPU s':>8} "
        f"{'µs per event':>12} {'peak MiB':>9}"
    )
    for n, by in results.items():
        for e in ("duckdb", "spark"):
            if e in by:
                m = by[e]
                print(
                    f"{n:>9,} {by['events']:>11,} {e:<7} {m['wall_s']:>8.1f} {m['cpu_s']:>8.1f} "
                    f"{m['wall_s'] / by['events'] * 1e6:>12.2f} {m['peak_tree_rss_mib']:>9,.0f}"
                )
    (args.work / "spark_bench.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
