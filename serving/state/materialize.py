"""The service's state written once, for any number of workers to read.

`sunshine materialize` (and `sunshine serve --workers N` at start, or when the registry
changes) validates the registry and builds what every request reads, once: the validated
tables (a DuckDB file), today's feature matrix and last month's (.npy, read by `pread`), the
persons' districts and each served task's caseload with its figures (Parquet). Each build is
a generation folder, complete before `CURRENT` names it, so a worker never opens half of one;
a worker that sees `CURRENT` move opens the new generation and swaps it in.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from features.compute.matrix import open_matrix
from features.contract.codebook import COLUMNS as CODEBOOK_COLUMNS
from features.contract.codebook import parse_codebook
from features.core.errors import InputError
from features.core.io import atomic_path
from features.storage.store import LoadReport, Store, identity_of, open_registry, reference_date_of
from serving.state.caseload import Caseload, month_before
from serving.state.champions import Loaded, load_champions
from serving.state.indicator_source import IndicatorSource, indicator_source
from serving.state.service import ServiceState, build_state

CURRENT = "CURRENT"
FAILED = "REFRESH_FAILED"  # why the last build from a changed registry failed, for /readyz
MANIFEST = "manifest.json"
KEEP = 2  # generations kept: the current one, and the one workers may still be leaving
FORMAT = 2  # of a generation's files: a service reads only the format it writes (2: caseloads keep
# each member's reasons)


def current(root: Path) -> Path | None:
    """The generation `CURRENT` names, or None before the first."""
    pointer = Path(root) / CURRENT
    if not pointer.exists():
        return None
    return Path(root) / pointer.read_text().strip()


def manifest(generation: Path) -> dict:
    return json.loads((generation / MANIFEST).read_text())


def reusable(
    root: Path, store_identity: dict, loaded: Loaded, rising: float, lenient: bool
) -> Path | None:
    """The current generation if it was built from this registry, as it stands, for these
    champions and this --rising: then a restart reuses it instead of building again. One
    built leniently around rejected rows is not reused by a strict run, which must refuse
    them."""
    gen = current(root)
    if gen is None:
        return None
    m = manifest(gen)
    versions = {t: str(f["version"]) for t, (_, f) in loaded.models.items()}
    report = m["report"]
    rejected = report["rejected_persons"] + report["rejected_events"]
    same = (
        m.get("format") == FORMAT
        and m["identity"] == store_identity
        and m["caseloads"] == versions
        and m["rising"] == rising
        and (lenient or rejected == 0)
    )
    return gen if same else None


def materialize(store: Store, loaded: Loaded, root: Path, rising: float) -> Path:
    """Build a new generation under `root` and make it current; returns its folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)  # persons' data: the owner's only
    name = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    gen = root / f".{name}.partial"
    gen.mkdir(mode=0o700)
    state = build_state(store, loaded, rising=rising, out=gen)
    store.save(gen / "registry.duckdb")
    state.persons.to_parquet(gen / "persons.parquet")
    assert state.last_month is not None
    pd.DataFrame({"person_id": state.last_month.index}).to_parquet(gen / "last_month.parquet")
    cohorts = []
    for (task, day), mask in state.known_cohorts().items():
        np.save(gen / f"cohort-{task}-{day}.npy", mask)
        cohorts.append([task, str(day)])
    caseloads = {}
    for task, caseload in state.built_caseloads().items():
        caseload.frame.to_parquet(gen / f"caseload-{task}.parquet")
        caseloads[task] = caseload.version
    facts = {
        "format": FORMAT,
        "generation": name,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "identity": store.identity(),
        "reference_date": str(store.reference_date),
        "report": {k: v for k, v in asdict(store.report).items() if k != "rejects_path"},
        "codebook": store.codebook.rows().to_dict("records"),
        "features": state.today.names,
        "caseloads": caseloads,
        "cohorts": cohorts,
        "rising": rising,
    }
    (gen / MANIFEST).write_text(json.dumps(facts, indent=1, ensure_ascii=False))
    gen.rename(root / name)
    with atomic_path(root / CURRENT) as tmp:
        tmp.write_text(name + "\n")
    _sweep(root, name)
    return root / name


def ensure_state(
    data: str | Path,
    root: Path,
    rising: float,
    lenient: bool,
    say: Callable[[str], None],
    force: bool = False,
) -> Path:
    """The current generation, reused when it is up to date (unless `force`), else built."""
    loaded = load_champions()
    source = open_registry(data)
    identity = identity_of(source, reference_date_of(source))
    if not force and (kept := reusable(root, identity, loaded, rising, lenient)) is not None:
        say(f"reusing the materialized state {kept}: built from this registry as it stands")
        return kept
    built = materialize(Store(source, lenient=lenient), loaded, root, rising)
    say(f"materialized the service state in {built}")
    return built


def _sweep(root: Path, keep: str) -> None:
    """Old generations beyond KEEP, and partial ones an interrupted build left. A worker still
    reading a removed one keeps its open files (the system frees them when it lets go)."""
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in [p for p in done if p.name != keep][: max(0, len(done) - KEEP)]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".*.partial"):
        if partial.name != f".{keep}.partial":
            shutil.rmtree(partial, ignore_errors=True)


def open_state(
    gen: Path,
    source: str,
    loaded: Loaded,
    indicators: Callable[[Store], IndicatorSource] = indicator_source,
) -> ServiceState:
    """A worker's state over a generation: the store and matrices read from their files, the
    caseloads read as built (those of a champion promoted since are built here);
    `indicators` makes the programme indicators' source over the generation's store."""
    if not (gen / MANIFEST).exists():
        raise InputError(f"{gen}: not a materialized service state (no {MANIFEST})")
    m = manifest(gen)
    if m.get("format") != FORMAT:
        raise InputError(f"{gen}: written by another version; run `sunshine materialize` again")
    ref = dt.date.fromisoformat(m["reference_date"])
    codebook = parse_codebook(
        pd.DataFrame(m["codebook"], columns=list(CODEBOOK_COLUMNS)).fillna(""), f"{gen} codebook"
    )
    store = Store.open_saved(
        gen / "registry.duckdb", source, ref, LoadReport(**m["report"]), codebook
    )
    persons = pd.read_parquet(gen / "persons.parquet")
    names = m["features"]
    today = open_matrix(gen / "today.npy", names, persons.index)
    earlier = pd.Index(pd.read_parquet(gen / "last_month.parquet")["person_id"], name="person_id")
    state = ServiceState(
        store,
        loaded,
        persons,
        today,
        indicators(store),
        last_month=open_matrix(gen / "last_month.npy", names, earlier),
        rising=m["rising"],
        built_at=m["built_at"],
    )
    for task, day in m["cohorts"]:
        mask = np.load(gen / f"cohort-{task}-{day}.npy")
        state.adopt_cohort(task, dt.date.fromisoformat(day), mask)
    for task, (_, facts) in loaded.models.items():
        if m["caseloads"].get(task) == str(facts["version"]):
            frame = pd.read_parquet(gen / f"caseload-{task}.parquet")
            state.adopt(Caseload(task, str(facts["version"]), ref, month_before(ref), frame))
    state.refresh_caseloads()
    return state
