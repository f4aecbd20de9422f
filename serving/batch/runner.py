"""Batch scoring of rosters through the API's own scoring path, resumable and atomic.

The roster is read in chunks; each chunk is scored and written as a Parquet part under
`OUT.parts/`, atomically. The final file is assembled from the parts and renamed into place, so
it is never half written, and `--resume` skips the parts already done: the result is the same
file an uninterrupted run would give.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.compute.builder import FeatureBuilder
from features.compute.labels import cohort_members
from features.contract.checks import as_of_problem
from features.core.errors import InputError
from features.core.io import atomic_path, file_sha256
from features.storage.store import Store
from features.tasks import SupportOption, get_task
from models.risk_model import RiskModel, Scored
from serving.batch.columns import RESULT_COLUMNS, empty_result, put_scores, score_and_explain
from serving.batch.histogram import histogram_svg
from serving.batch.job import RosterJob
from serving.batch.roster_io import read_chunks, write_output
from serving.scoring.cohort_policy import NOT_IN_COHORT, out_of_cohort_warning

HIST_BINS = 40


@dataclass
class Summary:
    rows: int = 0
    status: Counter = field(default_factory=Counter)
    tiers: Counter = field(default_factory=Counter)
    districts: dict[str, Counter] = field(default_factory=dict)
    chunks_skipped: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    factors: Counter = field(default_factory=Counter)  # readable factor label -> rows

    def add(self, other: Summary) -> None:
        self.rows += other.rows
        self.status.update(other.status)
        self.tiers.update(other.tiers)
        for district, tiers in other.districts.items():
            self.districts.setdefault(district, Counter()).update(tiers)
        self.histogram += other.histogram
        self.factors.update(other.factors)

    @classmethod
    def of(cls, result: pd.DataFrame) -> Summary:
        """One part's counts; parts are counted where they are written, off the main thread."""
        ok = result[result.status == "ok"]
        districts: dict[str, Counter] = {}
        for (district, tier), n in ok.groupby(["_district", "tier"]).size().items():
            districts.setdefault(district, Counter())[tier] += n
        reasons = pd.concat([ok.factor_1, ok.factor_2, ok.factor_3]).dropna()
        return cls(
            rows=len(result),
            status=Counter(result["status"].value_counts().to_dict()),
            tiers=Counter(ok["tier"].value_counts().to_dict()),
            districts=districts,
            histogram=np.histogram(ok.probability.dropna(), bins=HIST_BINS, range=(0, 1))[0],
            factors=Counter(reasons.value_counts().to_dict()),
        )


def count_rows(path: Path) -> int | None:
    """For the progress bar's total and ETA only."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".csv":
        with open(path, "rb") as fh:
            return max(
                0, sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1
            )
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    try:
        sheet = book.worksheets[0]
        rows = sheet.max_row  # from the sheet's stored dimensions, when it has them
        if rows is None:
            rows = sum(1 for _ in sheet.iter_rows(values_only=True))
        return max(0, rows - 1)
    finally:
        book.close()


def _pieces(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks, with the first cut after its first quarter and the last before its last
    quarter. A small first piece lets scoring start after a small feature build, and a small
    last piece leaves little writing after the last scoring, so the stages overlap from start
    to end. (More pieces cost more than they save: each feature build has a fixed cost.) The
    cuts depend only on the roster and the chunk size, so a resumed run cuts the same way."""
    chunk, first = next(chunks, None), True
    while chunk is not None:
        following = next(chunks, None)  # one chunk ahead, to know which is the last
        n = len(chunk)
        cuts = {0, n, n // 4 if first else 0, n - n // 4 if following is None else n}
        for lo, hi in itertools.pairwise(sorted(cuts)) if n else [(0, 0)]:
            yield chunk.iloc[lo:hi]  # a roster with no rows still gives its columns
        chunk, first = following, False


class RegistryFacts(Protocol):
    """What a roster run needs to know of any registry, on whichever engine."""

    reference_date: dt.date

    def identity(self, content: bool = False) -> dict: ...


@dataclass
class _Pending:
    """A checked chunk waiting to be scored: its rows' outputs so far and their features."""

    chunk: pd.DataFrame
    out: dict[str, np.ndarray]
    rows: np.ndarray  # positions in the chunk of the rows to score
    spine: pd.DataFrame
    frame: pd.DataFrame | None
    where: np.ndarray  # each row's position in the persons table (pk - 1), -1 if unknown
    district: np.ndarray  # each row's district, "unknown" for an unknown person or none


class RosterScorer:
    """A roster run on one machine: DuckDB checks the rows against the registry and builds
    their features, LightGBM scores them here. `serving.batch.spark.SparkRosterScorer`
    replaces the four registry steps (`_look_up`, `_members`, `_features`, `_score`) with
    Spark's and keeps everything else: the row checks, statuses, parts, resume and output."""

    def __init__(
        self,
        job: RosterJob,
        store: Store,
        model: RiskModel,
        facts: dict,
        options: tuple[SupportOption, ...],
    ) -> None:
        self._begin(job, store, model, facts, options)
        self.store = store
        # only what the model's trees use: the rest cannot change a score or a reason
        self.builder = FeatureBuilder(store, model.needed_features(), con=store.cursor())
        self.cohorts: dict[dt.date, np.ndarray] = {}

    def _begin(
        self,
        job: RosterJob,
        registry: RegistryFacts,
        model: RiskModel,
        facts: dict,
        options: tuple[SupportOption, ...],
    ) -> None:
        self.job, self.model, self.facts, self.options = job, model, facts, options
        self.task = get_task(job.task)
        self.reference_date: dt.date = registry.reference_date
        # by content, read once: a resumed run's parts must come from the same data
        self.data_identity = registry.identity(content=True)
        self.as_of = job.as_of or self.reference_date
        if why := as_of_problem(self.as_of, self.reference_date):
            # the run's own date is the user's flag: every row would be an error
            raise InputError(f"--as-of {self.as_of}: {why}")
        self.parts_dir = job.out.with_name(job.out.name + ".parts")
        self.input_sha = file_sha256(job.roster)
        self.timings: Counter = Counter()  # seconds by stage, for the benchmark

    # -- the run -----------------------------------------------------------------------------
    def manifest(self) -> dict:
        j = self.job
        return {
            "input_sha256": self.input_sha,
            "task": j.task,
            "as_of": str(self.as_of),
            "model_version": str(self.facts["version"]),
            "model_run_id": str(self.facts.get("run_id")),
            "data": self.data_identity,
            "lang": j.lang,
            "explain": j.explain,
            "chunk_rows": j.chunk_rows,
            "include_out_of_cohort": j.include_out_of_cohort,
        }

    def prepare_parts(self) -> None:
        manifest = self.parts_dir / "manifest.json"
        now = self.manifest()
        if self.job.resume and manifest.exists():
            old = json.loads(manifest.read_text())
            if old != now:
                changed = sorted(k for k in now if old.get(k) != now[k])
                raise InputError(
                    f"{self.parts_dir}: the interrupted run used other inputs or settings "
                    f"({', '.join(changed)} changed); run without --resume to start again"
                )
            return
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.parts_dir.mkdir(parents=True)
        manifest.write_text(json.dumps(now))

    def run(self, progress=None) -> Summary:
        """Three stages overlap, one chunk apart. A worker reads the next chunk, checks its
        rows and builds their features (DuckDB, on its own cursor); the main thread scores and
        explains (LightGBM); a writer labels the reasons and writes the part. DuckDB and
        LightGBM release the GIL, so on two cores the feature and writing time mostly hides
        behind the explanations."""
        self.prepare_parts()
        summary = Summary()
        parts = []
        staged = self._stage_chunks()
        with (
            ThreadPoolExecutor(max_workers=1) as reader,
            ThreadPoolExecutor(max_workers=1) as writer,
        ):
            ahead = reader.submit(next, staged, None)
            written: deque = deque()
            while (item := ahead.result()) is not None:
                ahead = reader.submit(next, staged, None)
                part, pending, done = item
                if pending is None:
                    summary.chunks_skipped += 1
                    written.append((part, None, Summary.of(done)))
                else:
                    scores = self._score(pending)
                    job = writer.submit(self._write_part, part, pending, scores)
                    written.append((part, job, None))
                while written and (written[0][1] is None or written[0][1].done()):
                    self._collect(written.popleft(), summary, parts, progress)
            while written:
                self._collect(written.popleft(), summary, parts, progress)
        t = time.perf_counter()
        with atomic_path(self.job.out) as tmp:
            write_output(parts, self.job.out, tmp, drop=["_district"])
        self.timings["write"] += time.perf_counter() - t
        self.write_html(summary)
        shutil.rmtree(self.parts_dir)
        return summary

    def _collect(self, item: tuple, summary: Summary, parts: list, progress) -> None:
        part, future, counted = item
        if future is not None:
            counted = future.result()
        summary.add(counted)
        parts.append(part)
        if progress:
            progress(counted.rows)

    # -- one chunk ---------------------------------------------------------------------------
    def _stage_chunks(self) -> Iterator[tuple[Path, _Pending | None, pd.DataFrame | None]]:
        """Stage one, in the worker: (part, checked chunk with features, or the done part)."""
        seen: dict[tuple[str, str], int] = {}
        chunks = _pieces(read_chunks(self.job.roster, self.job.chunk_rows))
        for c, chunk in enumerate(self._timed(chunks, "read")):
            part = self.parts_dir / f"part-{c:05d}.parquet"
            keys = self._keys(chunk)
            if part.exists():
                self._remember(keys, seen)
                counted = ["status", "tier", "_district", "probability"]
                counted += ["factor_1", "factor_2", "factor_3"]
                done = pq.read_table(part, columns=counted).to_pandas()
                yield part, None, done
            else:
                yield part, self._check_chunk(chunk, keys, seen), None

    def _timed(self, it, key: str):
        while True:
            t = time.perf_counter()
            item = next(it, None)
            self.timings[key] += time.perf_counter() - t
            if item is None:
                return
            yield item

    def _keys(self, chunk: pd.DataFrame) -> pd.DataFrame:
        pid = chunk["person_id"].astype(str).str.strip()
        raw = (
            chunk["as_of"].astype(str).str.strip()
            if "as_of" in chunk
            else pd.Series("", index=chunk.index)
        )
        parsed = pd.to_datetime(
            raw.where(raw != "", str(self.as_of)), errors="coerce", format="ISO8601"
        )
        return pd.DataFrame({"person_id": pid, "as_of_raw": raw, "as_of": parsed.dt.date})

    def _remember(self, keys: pd.DataFrame, seen: dict) -> None:
        for row, pid, d in zip(keys.index, keys.person_id, keys.as_of, strict=True):
            seen.setdefault((pid, str(d)), row)

    def _check_chunk(self, chunk: pd.DataFrame, keys: pd.DataFrame, seen: dict) -> _Pending:
        """Row errors, duplicates (against every earlier row), then features for the rest."""
        n = len(chunk)
        out = empty_result(n, self.facts)
        pid, d, raw = keys.person_id, keys.as_of, keys.as_of_raw
        error = out["error"]
        missing = (pid == "").to_numpy()
        where, district = self._look_up(pid)
        unknown = ~missing & (where < 0)
        error[unknown] = "person_id: unknown person " + pid[unknown].astype(object)
        error[missing] = "person_id: missing"
        undated = ~missing & ~unknown & d.isna().to_numpy()
        error[undated] = "as_of: cannot parse '" + raw[undated].astype(object) + "' as date"
        dated = ~missing & ~unknown & ~undated
        refused = np.zeros(n, bool)
        for day in pd.unique(d[dated]):  # the one date policy, per distinct date
            if why := as_of_problem(day, self.reference_date):
                on_day = dated & (d == day).to_numpy()
                error[on_day] = f"as_of: {why}"
                refused |= on_day
        candidates = np.flatnonzero(~(missing | unknown | undated | refused))
        good = []
        pairs = zip(
            pid.iloc[candidates].tolist(), map(str, d.iloc[candidates].tolist()), strict=True
        )
        for i, row, key in zip(
            candidates.tolist(), keys.index[candidates].tolist(), pairs, strict=True
        ):
            first = seen.setdefault(key, row)
            if first != row:
                error[i] = f"duplicate of row {first} (answered there)"
            else:
                good.append(i)
        out["status"][error != ""] = "error"
        good = np.asarray(good, dtype=np.int64)
        # a padded id is read as the id it holds, and says so: never changed in silence
        padded = (chunk["person_id"].astype(str) != pid).to_numpy()
        out["warning"][padded] = "person_id: surrounding spaces removed"
        member = self._members(pid.iloc[good], d.iloc[good].to_numpy(), where[good])
        out["in_cohort"][good] = member
        for i in good[~member].tolist():
            if self.job.include_out_of_cohort:
                _warn(out, i, out_of_cohort_warning(self.task, d.iat[i]))
            else:
                out["status"][i] = NOT_IN_COHORT
                _warn(out, i, self.task.not_in_cohort(self.job.lang))
        if not self.job.include_out_of_cohort:
            good = good[member]
        rows = good
        spine = pd.DataFrame(
            {"person_id": pid.iloc[rows].to_numpy(), "as_of": d.iloc[rows].to_numpy()}
        )
        frame = None
        if len(rows):
            t = time.perf_counter()
            frame = self._features(spine)
            self.timings["features"] += time.perf_counter() - t
        return _Pending(chunk, out, rows, spine, frame, where, district)

    def _look_up(self, pid: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Each row's place in the persons table and its district, by a join in DuckDB: no
        index over the whole registry's ids has to be built before the first chunk."""
        con = self.builder.con
        con.register("roster_ids", pd.DataFrame({"i": np.arange(len(pid)), "person_id": pid}))
        found = con.execute(
            "SELECT r.i, p.pk, h.district FROM roster_ids r JOIN persons p USING (person_id) "
            "JOIN residence h USING (pk)"
        ).df()
        con.unregister("roster_ids")
        where = np.full(len(pid), -1, np.int64)
        where[found.i] = found.pk - 1
        district = np.full(len(pid), "unknown", object)
        district[found.i] = found.district.fillna("unknown").to_numpy(object)
        return where, district

    def _members(self, pid: pd.Series, days: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Whether each row's person is in the task's cohort on the row's day."""
        return cohort_members(self.store, self.task, days, where, self.cohorts)

    def _features(self, spine: pd.DataFrame) -> pd.DataFrame:
        return self.builder.build(spine)

    def _score(self, pending: _Pending) -> tuple[Scored, Scored | None, np.ndarray] | None:
        """Stage two, in the main thread: the model's scores and contributions."""
        if pending.frame is None:
            return None
        t = time.perf_counter()
        scores = score_and_explain(self.model, pending.frame, self.job.explain)
        self.timings["score_and_explain"] += time.perf_counter() - t
        return scores

    def _write_part(self, part: Path, pending: _Pending, scores: tuple | None) -> Summary:
        """Stage three, in the writer: scores and readable reasons into the part file."""
        t = time.perf_counter()
        out = pending.out
        if scores is not None:
            self._render(out, pending.rows, scores)
        result = pending.chunk.reset_index(drop=True).copy()
        for c in RESULT_COLUMNS:
            result[c] = out[c]
        result["probability"] = pd.to_numeric(result["probability"])
        result["percentile"] = pd.to_numeric(result["percentile"])
        result["_district"] = pending.district
        with atomic_path(part) as tmp:
            pq.write_table(pa.Table.from_pandas(result, preserve_index=False), tmp)
        self.timings["write"] += time.perf_counter() - t
        return Summary.of(result)

    def _render(self, out: dict[str, np.ndarray], rows: np.ndarray, scores: tuple) -> None:
        put_scores(out, rows, scores, self.options, self.job.lang)

    # -- the manager's summary ---------------------------------------------------------------
    def write_html(self, summary: Summary) -> Path:
        districts = pd.DataFrame(summary.districts).T.fillna(0).astype(int)
        for tier in ("high", "medium", "low"):
            if tier not in districts:
                districts[tier] = 0
        districts = districts[["high", "medium", "low"]].sort_index()
        status = ", ".join(f"{k}: {v:,}" for k, v in sorted(summary.status.items()))
        written = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
        top = pd.DataFrame(summary.factors.most_common(15), columns=["factor", "rows"])
        style = (
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
        )
        html = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Sunshine Risk roster summary</title><style>{style}</style></head><body>
<h1>Roster scores: {self.job.task}</h1>
<p>{self.job.roster.name}, {summary.rows:,} rows ({status}); as of {self.as_of};
model {self.facts["name"]} version {self.facts["version"]}; written {written} UTC.</p>
<p><b>For support planning with human review only; never for enforcement or sanctions.</b></p>
<h2>Tiers by district</h2>{districts.to_html()}
<h2>Distribution of scores</h2>
{histogram_svg(summary.histogram)}
<h2>Factors that come up most</h2>
{top.to_html(index=False)}
</body></html>"""
        path = self.job.out.with_suffix(".html")
        with atomic_path(path) as tmp:
            tmp.write_text(html, encoding="utf-8")
        return path


def _warn(out: dict[str, np.ndarray], i: int, text: str) -> None:
    """Add a warning to row i's, which may already hold one."""
    out["warning"][i] = f"{out['warning'][i]}; {text}" if out["warning"][i] else text
