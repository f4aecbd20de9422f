"""Feature pipeline benchmark: the spec-driven builder against a hand-written DuckDB query.

    python benchmarks/features_bench.py --persons 1000000 --repeats 3

Generates the synthetic registry once (reused if present), then builds all features for a spine
of 4 quarterly as-of dates per person, alternating the two competitors in separate processes.
The baseline computes the same counts and statistics in long form with hand-written SQL and
writes its tables to Parquet; the builder also pivots them into the wide, model-ready layout.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path

import pandas as pd

from benchmarks.common import Meter, arguments, interleave, medians, report, run_child
from features.compute.builder import FeatureBuilder
from features.storage.store import Store
from features.synth.city import synthesize, write_population

DATES = [dt.date(2024, 7, 1), dt.date(2024, 10, 1), dt.date(2025, 1, 1), dt.date(2025, 4, 1)]

BASELINE_SQL = [
    """CREATE TEMP TABLE sk AS
       SELECT p.pk, d.as_of, CAST(d.as_of AS TIMESTAMP) AS ts,
              CAST(row_number() OVER () AS BIGINT) AS row_id
       FROM persons p CROSS JOIN dates d""",
    """CREATE TEMP TABLE bj AS
       SELECT s.row_id, e.event_type, e.value, e.detail, e.event_time,
              date_diff('day', CAST(e.event_time AS DATE), s.as_of) AS d
       FROM sk s JOIN events e
         ON e.pk = s.pk AND e.event_time < s.ts AND e.available_time < s.ts""",
    """CREATE TEMP TABLE b_long AS
       SELECT row_id, event_type,
         count(*) FILTER (WHERE d <= 30) AS n30, count(*) FILTER (WHERE d <= 90) AS n90,
         count(*) FILTER (WHERE d <= 180) AS n180, count(*) FILTER (WHERE d <= 365) AS n365,
         count(*) AS nall,
         avg(value) FILTER (WHERE d <= 30) AS a30, avg(value) FILTER (WHERE d <= 90) AS a90,
         avg(value) FILTER (WHERE d <= 180) AS a180, avg(value) FILTER (WHERE d <= 365) AS a365,
         avg(value) AS aall,
         max(value) FILTER (WHERE d <= 30) AS m30, max(value) FILTER (WHERE d <= 90) AS m90,
         max(value) FILTER (WHERE d <= 180) AS m180, max(value) FILTER (WHERE d <= 365) AS m365,
         max(value) AS mall,
         arg_max(value, (event_time, value)) FILTER (WHERE value IS NOT NULL) AS last_value,
         min(d) AS days_since
       FROM bj GROUP BY ALL""",
    """CREATE TEMP TABLE b_domain AS
       SELECT row_id,
         min(d) FILTER (WHERE event_type = 'urine_test' AND value = 1) AS since_pos,
         min(d) FILTER (WHERE event_type = 'rehab_discharge'
                        AND detail IN ('compulsory_isolation', 'voluntary')) AS since_dis,
         arg_max(CAST(event_type AS VARCHAR), event_time)
           FILTER (WHERE event_type IN ('employment_start', 'employment_end')) AS job
       FROM bj GROUP BY row_id""",
    """CREATE TEMP TABLE b_run AS
       WITH t AS (
         SELECT row_id, value, sum(CASE WHEN value = 1 THEN 1 ELSE 0 END) OVER (
           PARTITION BY row_id ORDER BY event_time, value ROWS UNBOUNDED PRECEDING) AS grp
         FROM bj WHERE event_type = 'urine_test')
       SELECT row_id, max(n) AS run FROM (
         SELECT row_id, grp, count(*) FILTER (WHERE value = 0) AS n FROM t GROUP BY ALL)
       GROUP BY row_id""",
    """CREATE TEMP TABLE b_static AS
       SELECT s.row_id, date_diff('day', p.birth_date, s.as_of) / 365.25 AS age, p.sex,
         p.district,
         CASE WHEN p.registration_date < s.as_of
              THEN date_diff('day', p.registration_date, s.as_of) / 365.25 END AS yrs,
         CASE WHEN p.registration_date < s.as_of THEN p.primary_substance END AS subst
       FROM sk s JOIN persons p USING (pk)""",
]


def child(competitor: str, data: Path, out: Path) -> None:
    with Meter() as load:
        store = Store(data)
    persons = store.con.execute("SELECT person_id FROM persons").df().person_id
    spine = pd.DataFrame(
        {
            "person_id": persons.repeat(len(DATES)).to_numpy(),
            "as_of": DATES * len(persons),
        }
    )
    with Meter() as m:
        if competitor == "builder":
            FeatureBuilder(store).write(spine, out)
        else:
            con = store.con
            con.register("dates_in", pd.DataFrame({"as_of": pd.to_datetime(DATES)}))
            con.execute(
                "CREATE TEMP TABLE dates AS SELECT CAST(as_of AS DATE) AS as_of FROM dates_in"
            )
            with Meter() as compute:
                for sql in BASELINE_SQL:
                    con.execute(sql)
            # like the builder, deliver the results as files
            for name in ("b_long", "b_domain", "b_run", "b_static"):
                target = f"{out.with_suffix('')}-{name}.parquet"
                con.execute(f"COPY {name} TO '{target}' (FORMAT parquet)")
    extra = {} if competitor == "builder" else {"compute_cpu_s": round(compute.cpu, 2)}
    report(
        {
            **extra,
            "competitor": competitor,
            "spine_rows": len(spine),
            "events": store.report.events,
            "load_wall_s": round(load.wall, 2),
            "wall_s": round(m.wall, 2),
            "cpu_s": round(m.cpu, 2),
        }
    )


def main() -> None:
    ap = arguments(persons=1_000_000, work="bench-out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", nargs=3, metavar=("COMPETITOR", "DATA", "OUT"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    data = args.work / f"registry-{args.persons}-{args.seed}"
    gen = None
    if not (data / "dataset.json").exists():
        with Meter() as g:
            write_population(synthesize(args.persons, args.seed), data, args.seed)
        gen = {"wall_s": round(g.wall, 1), "cpu_s": round(g.cpu, 1)}
    out = args.work / "features.parquet"
    runs = interleave(
        ["builder", "baseline"],
        args.repeats,
        lambda c: run_child(__spec__.name, ["--child", c, str(data), str(out)]),
    )
    keys = ["wall_s", "cpu_s", "peak_rss_mib", "load_wall_s"]
    med = {c: medians(r, keys) for c, r in runs.items()}
    events = runs["builder"][0]["events"]
    rows = runs["builder"][0]["spine_rows"]
    print(
        f"persons {args.persons:,}  events {events:,}  spine rows {rows:,}  repeats {args.repeats}"
    )
    if gen:
        print(f"generation: {gen['wall_s']} s wall, {gen['cpu_s']} s CPU")
    print(
        f"{'competitor':<10} {'wall s':>8} {'CPU s':>8} {'events/s':>12} "
        f"{'peak RSS MiB':>13} {'load s':>7}"
    )
    for c, m in med.items():
        print(
            f"{c:<10} {m['wall_s']:>8.1f} {m['cpu_s']:>8.1f} {events / m['wall_s']:>12,.0f} "
            f"{m['peak_rss_mib']:>13,.0f} {m['load_wall_s']:>7.1f}"
        )
    ratio = med["builder"]["cpu_s"] / med["baseline"]["cpu_s"]
    compute_only = statistics.median(r["compute_cpu_s"] for r in runs["baseline"])
    ratio_compute = med["builder"]["cpu_s"] / compute_only
    print(f"CPU ratio builder / hand-written baseline: {ratio:.2f} (target <= 1.5)")
    print(
        f"  against the baseline's queries alone ({compute_only:.1f} CPU s, without writing "
        f"its results): {ratio_compute:.2f}"
    )
    (args.work / "features_bench.json").write_text(
        json.dumps(
            {
                "medians": med,
                "runs": runs,
                "generation": gen,
                "cpu_ratio": ratio,
                "cpu_ratio_compute_only": ratio_compute,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
