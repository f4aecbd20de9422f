"""Batch scoring of rosters through the API's own scoring path, resumable and atomic.

The roster is read in chunks; each chunk is scored and written as a Parquet part under
`OUT.parts/`, atomically. The final file is assembled from the parts and renamed into place, so
it is never half written, and `--resume` skips the parts already done: the result is the same
file an uninterrupted run would give.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.builder import FeatureBuilder
from features.io import atomic_path
from features.labels import cohort_members
from features.spec import FEATURES_BY_NAME
from features.store import DataError, Store
from models.deployable import RiskModel
from serving.roster_io import check_format, check_roster, read_chunks, write_output
from serving.scoring import Intervention, score_batch
from training.explain import TopK

EXPLAIN_MODES = ("top3", "top", "none")
LANGS = ("en", "zh")
EFFECT = {
    "en": {"raises": "raises", "lowers": "lowers"},
    "zh": {"raises": "升高", "lowers": "降低"},
}
RESULT_COLUMNS = (
    "probability",
    "tier",
    "percentile",
    *[f"factor_{k}{s}" for k in (1, 2, 3) for s in ("", "_value", "_effect")],
    "support",
    "model_name",
    "model_version",
    "status",
    "error",
    "warning",
)


@dataclass
class RosterJob:
    roster: Path
    task: str
    out: Path
    as_of: dt.date | None = None
    lang: str = "en"
    explain: str = "top3"
    resume: bool = False
    chunk_rows: int = 50_000


@dataclass
class Summary:
    rows: int = 0
    status: Counter = field(default_factory=Counter)
    tiers: Counter = field(default_factory=Counter)
    districts: dict[str, Counter] = field(default_factory=dict)
    chunks_skipped: int = 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def count_rows(path: Path) -> int | None:
    """For the progress bar's ETA only."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".csv":
        with open(path, "rb") as fh:
            return max(
                0, sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1
            )
    return None


class RosterScorer:
    def __init__(
        self,
        job: RosterJob,
        store: Store,
        model: RiskModel,
        facts: dict,
        interventions: list[Intervention],
    ) -> None:
        if job.explain not in EXPLAIN_MODES:
            raise DataError(f"--explain must be one of {', '.join(EXPLAIN_MODES)}")
        if job.lang not in LANGS:
            raise DataError(f"--lang must be one of {', '.join(LANGS)}")
        check_roster(job.roster)
        check_format(job.out, "output")
        self.job, self.store, self.model, self.facts = job, store, model, facts
        self.interventions = interventions
        self.as_of = job.as_of or store.reference_date
        self.builder = FeatureBuilder(store)
        persons = store.con.execute("SELECT person_id, district FROM persons").df()
        self.person_index = pd.Index(persons.person_id)
        self.districts = persons.district.fillna("unknown").to_numpy(object)
        self.cohorts: dict[dt.date, np.ndarray] = {}
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
            "lang": j.lang,
            "explain": j.explain,
            "chunk_rows": j.chunk_rows,
        }

    def prepare_parts(self) -> None:
        manifest = self.parts_dir / "manifest.json"
        if self.job.resume and manifest.exists():
            if json.loads(manifest.read_text()) != self.manifest():
                raise DataError(
                    f"{self.parts_dir}: the interrupted run used other inputs or settings; "
                    "run without --resume to start again"
                )
            return
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.parts_dir.mkdir(parents=True)
        manifest.write_text(json.dumps(self.manifest()))

    def run(self, progress=None) -> Summary:
        self.prepare_parts()
        summary = Summary()
        seen: dict[tuple[str, str], int] = {}
        parts = []
        chunks = read_chunks(self.job.roster, self.job.chunk_rows)
        for c, chunk in enumerate(self._timed(chunks, "read")):
            if c == 0 and "person_id" not in chunk.columns:
                raise DataError(
                    f"{self.job.roster}: no person_id column (found: {', '.join(chunk.columns)})"
                )
            part = self.parts_dir / f"part-{c:05d}.parquet"
            keys = self._keys(chunk)
            if part.exists():
                self._remember(keys, seen)
                result = pq.read_table(part, columns=["status", "tier", "_district"]).to_pandas()
                summary.chunks_skipped += 1
            else:
                result = self._score_chunk(chunk, keys, seen)
                t = time.perf_counter()
                with atomic_path(part) as tmp:
                    pq.write_table(pa.Table.from_pandas(result, preserve_index=False), tmp)
                self.timings["write"] += time.perf_counter() - t
            self._count(summary, result)
            parts.append(part)
            if progress:
                progress(len(chunk))
        t = time.perf_counter()
        with atomic_path(self.job.out) as tmp:
            write_output(parts, self.job.out, tmp, drop=["_district"])
        self.timings["write"] += time.perf_counter() - t
        self.write_html(parts, summary)
        shutil.rmtree(self.parts_dir)
        return summary

    # -- one chunk ---------------------------------------------------------------------------
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

    def _score_chunk(self, chunk: pd.DataFrame, keys: pd.DataFrame, seen: dict) -> pd.DataFrame:
        n = len(chunk)
        out: dict[str, np.ndarray] = {c: np.full(n, None, object) for c in RESULT_COLUMNS}
        out["status"][:] = "ok"
        out["error"][:] = ""
        out["warning"][:] = ""
        out["model_name"][:] = self.facts["name"]
        out["model_version"][:] = str(self.facts["version"])
        pid, d, raw = keys.person_id, keys.as_of, keys.as_of_raw
        error = out["error"]
        missing = (pid == "").to_numpy()
        where = self.person_index.get_indexer(pid)
        unknown = ~missing & (where < 0)
        error[unknown] = "person_id: unknown person " + pid[unknown].astype(object)
        error[missing] = "person_id: missing"
        undated = ~missing & ~unknown & d.isna().to_numpy()
        error[undated] = "as_of: cannot parse '" + raw[undated].astype(object) + "' as date"
        ref = self.store.reference_date
        later = ~missing & ~unknown & (pd.to_datetime(d) > pd.Timestamp(ref)).to_numpy()
        error[later] = f"as_of: after the data's reference date {ref}"
        candidates = np.flatnonzero(~(missing | unknown | undated | later))
        good = []
        pairs = zip(
            pid.iloc[candidates].tolist(), map(str, d.iloc[candidates].tolist()), strict=True
        )
        for i, row, key in zip(
            candidates.tolist(), keys.index[candidates].tolist(), pairs, strict=True
        ):
            first = seen.setdefault(key, row)
            if first != row:
                error[i] = f"duplicate of row {first} (scored there)"
            else:
                good.append(i)
        out["status"][error != ""] = "error"
        if good:
            self._score_rows(out, np.asarray(good), pid.iloc[good], d.iloc[good])
        result = chunk.reset_index(drop=True).copy()
        for c in RESULT_COLUMNS:
            result[c] = out[c]
        result["probability"] = pd.to_numeric(result["probability"])
        result["percentile"] = pd.to_numeric(result["percentile"])
        result["_district"] = np.where(where >= 0, self.districts[where], "unknown")
        return result

    def _score_rows(self, out: dict, good: np.ndarray, pid: pd.Series, d: pd.Series) -> None:
        spine = pd.DataFrame({"person_id": pid.to_numpy(), "as_of": d.to_numpy()})
        t = time.perf_counter()
        frame = self.builder.build(spine)
        self.timings["features"] += time.perf_counter() - t
        t = time.perf_counter()
        explain = 3 if self.job.explain == "top3" else 0
        scored, support = score_batch(self.model, frame, self.interventions, explain)
        out["probability"][good] = scored.probability
        out["tier"][good] = scored.tier
        out["percentile"][good] = scored.percentile
        explained = np.arange(len(good))
        if self.job.explain == "top":
            explained = np.flatnonzero(scored.tier == "high")
            if len(explained):
                scored, support = score_batch(
                    self.model, frame.iloc[explained], self.interventions, 3
                )
        if support is not None:
            self._fill_reasons(out, good[explained], scored.top, support)
        self.timings["score_and_explain"] += time.perf_counter() - t
        where = self.person_index.get_indexer(pid)
        for day in d.unique():
            outside = good[((d == day).to_numpy() & ~self._cohort(day)[where])]
            out["warning"][outside] = f"not in the {self.job.task} cohort on {day}; scored anyway"

    def _fill_reasons(self, out: dict, rows: np.ndarray, top: TopK, support: list) -> None:
        """Whole columns at once: a per-row loop over reason objects cost as much as TreeSHAP."""
        lang = self.job.lang
        specs = [FEATURES_BY_NAME[n] for n in top.names]
        labels = np.array([f.label_zh if lang == "zh" else f.label_en for f in specs], object)
        shown = top.shown
        values = top.display_values()
        for k in range(min(3, top.position.shape[1])):
            hide = ~shown[:, k]
            label = labels[top.position[:, k]]
            label[hide] = None
            value = np.array(
                [
                    None if v is None or isinstance(v, str) else f"{v:.4g}"
                    for v in (row[k] for row in values)
                ],
                object,
            )
            value[hide] = None
            effect = np.where(
                top.contribution[:, k] > 0, EFFECT[lang]["raises"], EFFECT[lang]["lowers"]
            ).astype(object)
            effect[hide] = None
            out[f"factor_{k + 1}"][rows] = label
            out[f"factor_{k + 1}_value"][rows] = value
            out[f"factor_{k + 1}_effect"][rows] = effect
        out["support"][rows] = ["; ".join(x[lang] for x in sup) for sup in support]

    def _cohort(self, d: dt.date) -> np.ndarray:
        """Cohort membership on a date, as a mask over the persons table."""
        if d not in self.cohorts:
            members = cohort_members(self.store, self.job.task, d)
            self.cohorts[d] = self.person_index.isin(list(members))
        return self.cohorts[d]

    def _count(self, summary: Summary, result: pd.DataFrame) -> None:
        summary.rows += len(result)
        summary.status.update(result["status"].value_counts().to_dict())
        ok = result[result.status == "ok"]
        summary.tiers.update(ok["tier"].value_counts().to_dict())
        for (district, tier), n in ok.groupby(["_district", "tier"]).size().items():
            summary.districts.setdefault(district, Counter())[tier] += n

    # -- the manager's summary ---------------------------------------------------------------
    def write_html(self, parts: list[Path], summary: Summary) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = ["status", "probability", "factor_1", "factor_2", "factor_3"]
        frame = pd.concat([pq.read_table(p, columns=cols).to_pandas() for p in parts])
        ok = frame[frame.status == "ok"]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(ok.probability.dropna(), bins=40, range=(0, 1), color="#d98c1f")
        ax.set_xlabel("probability")
        ax.set_ylabel("persons")
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png")
        plt.close(fig)
        self.histogram_png = png.getvalue()
        factors = Counter(pd.concat([ok.factor_1, ok.factor_2, ok.factor_3]).dropna())
        districts = pd.DataFrame(summary.districts).T.fillna(0).astype(int)
        for tier in ("high", "medium", "low"):
            if tier not in districts:
                districts[tier] = 0
        districts = districts[["high", "medium", "low"]].sort_index()
        status = ", ".join(f"{k}: {v:,}" for k, v in sorted(summary.status.items()))
        written = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
        image = base64.b64encode(self.histogram_png).decode()
        top = pd.DataFrame(factors.most_common(15), columns=["factor", "rows"])
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
<img alt="histogram of probabilities" src="data:image/png;base64,{image}">
<h2>Factors that come up most</h2>
{top.to_html(index=False)}
</body></html>"""
        path = self.job.out.with_suffix(".html")
        with atomic_path(path) as tmp:
            tmp.write_text(html, encoding="utf-8")
        return path


def log_batch_run(scorer: RosterScorer, summary: Summary) -> str:
    """A batch-inference run in MLflow: model, input hash, counts, tiers, score histogram."""
    import mlflow

    from training.tracking import experiment_id

    job = scorer.job
    with mlflow.start_run(
        experiment_id=experiment_id(f"sunshine-batch-{job.task}"), run_name="score-roster"
    ) as run:
        mlflow.set_tags({"kind": "batch-inference", "task": job.task})
        mlflow.log_params(
            {
                "model_name": scorer.facts["name"],
                "model_version": str(scorer.facts["version"]),
                "input_sha256": scorer.input_sha,
                "input": job.roster.name,
                "as_of": str(scorer.as_of),
                "explain": job.explain,
                "lang": job.lang,
            }
        )
        metrics = {"rows": summary.rows}
        metrics |= {f"rows_{k}": v for k, v in summary.status.items()}
        metrics |= {f"tier_{k}": v for k, v in summary.tiers.items()}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "score_histogram.png"
            png.write_bytes(scorer.histogram_png)
            mlflow.log_artifact(str(png))
        mlflow.log_artifact(str(job.out.with_suffix(".html")))
        return run.info.run_id
