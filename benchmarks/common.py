"""Measurement helpers for the benchmarks: each competitor runs in its own process."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Meter:
    """Wall and CPU seconds (all threads of this process) of a block."""

    def __enter__(self) -> Meter:
        self.wall0 = time.perf_counter()
        self.cpu0 = _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = _cpu() - self.cpu0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mib() -> float:
    """This process's own high-water RSS (VmHWM starts afresh at exec, unlike ru_maxrss, which
    on Linux keeps the parent's peak at fork)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(result: dict[str, Any]) -> None:
    """A child's last stdout line is its JSON result."""
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result), flush=True)


# the --max-in-flight of a server whose throughput is measured: no bound, nothing shed (the
# overload benchmark measures shedding itself)
THROUGHPUT = 0


def run_child(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark module's child (`python -m MODULE ARGS`) in a process of its own, from
    the repository's folder, with `env` added to the environment, and return the JSON its
    last line prints."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def medians(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def interleave(names: list[str], repeats: int, one: Callable[[str], dict]) -> dict[str, list]:
    """Alternate competitors run by run, so machine noise hits them alike."""
    out: dict[str, list] = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            out[n].append(one(n))
    return out


def arguments(persons: int, work: str, repeats: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark over a synthetic city takes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=persons)
    ap.add_argument("--repeats", type=int, default=repeats, help="runs; medians reported")
    ap.add_argument("--work", type=Path, default=Path(work))
    return ap
