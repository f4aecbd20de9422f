"""Batch roster scoring: formats, languages, bad rows, resume after a kill, API equality."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from conftest import sunshine, use_mlflow
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from benchmarks.servers import ServerThread
from features.storage.store import Store
from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state

SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def score_roster(
    root: Path, roster: str, out: str, *extra: str, check: bool = True, everyone: bool = True
):
    """Score a roster; `everyone` also scores persons outside the cohort (a random sample of
    the city is mostly outside it), as an analyst may ask."""
    return sunshine(
        root,
        "score-roster",
        roster,
        "--task",
        "relapse",
        "--out",
        out,
        "--data",
        "city",
        *(["--include-out-of-cohort"] if everyone else []),
        *extra,
        check=check,
    )


@pytest.fixture(scope="module")
def roster(served, tmp_path_factory):
    """A roster with a Chinese column, a bad date, an unknown person and a duplicate."""
    persons = pd.read_parquet(served / "city" / "persons.parquet")
    r = persons[["person_id"]].sample(400, random_state=2).reset_index(drop=True)
    r["站点"] = "花溪社区戒毒站"
    r["as_of"] = ""
    r.loc[3, "person_id"] = "NOBODY"
    r.loc[4, "as_of"] = "31/02/2024"
    r.loc[5, "as_of"] = "2024-01-01"
    r = pd.concat([r, r.iloc[[10]]], ignore_index=True)  # row 401 repeats row 11
    d = tmp_path_factory.mktemp("rosters")
    r.to_csv(d / "roster.csv", index=False, encoding="utf-8-sig")
    r.to_parquet(d / "roster.parquet", index=False)
    r.to_excel(d / "roster.xlsx", index=False)
    return d, r


@pytest.mark.parametrize(("src", "dst"), [("csv", "csv"), ("parquet", "parquet"), ("xlsx", "xlsx")])
def test_each_format_one_row_per_input_row_in_order(served, roster, tmp_path, src, dst):
    d, frame = roster
    out = tmp_path / f"scored.{dst}"
    score_roster(served, str(d / f"roster.{src}"), str(out), "--chunk-rows", "150")
    got = {
        "csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig"),
        "parquet": pd.read_parquet,
        "xlsx": lambda p: pd.read_excel(p, dtype=str),
    }[dst](out)
    assert list(got.person_id) == list(frame.person_id)
    assert list(got["站点"]) == ["花溪社区戒毒站"] * len(frame)
    if dst == "csv":
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    status = dict(zip(range(len(got)), got.status, strict=True))
    errors = got.error.fillna("") if dst == "xlsx" else got.error
    assert status[3] == "error" and "unknown person NOBODY" in errors[3]
    assert status[4] == "error" and "cannot parse '31/02/2024'" in errors[4]
    assert status[400] == "error" and errors[400] == "duplicate of row 11 (answered there)"
    ok = got[got.status == "ok"]
    assert len(ok) == len(frame) - 3
    assert pd.to_numeric(ok.probability).between(0, 1).all()
    assert set(ok.tier) <= {"low", "medium", "high"}
    assert (tmp_path / "scored.html").exists()
    assert not list(tmp_path.glob("*.parts"))


def test_languages_cohort_warning_and_fail_on_error(served, roster, tmp_path):
    d, frame = roster
    zh, en = tmp_path / "zh.csv", tmp_path / "en.csv"
    score_roster(served, str(d / "roster.csv"), str(zh), "--lang", "zh")
    score_roster(served, str(d / "roster.csv"), str(en), "--lang", "en")
    a, b = pd.read_csv(zh, encoding="utf-8-sig"), pd.read_csv(en, encoding="utf-8-sig")
    ok = a.status == "ok"
    assert a[ok].factor_1.str.contains(r"[\u4e00-\u9fff]").all()
    assert not b[ok].factor_1.str.contains(r"[\u4e00-\u9fff]").any()
    assert set(a[ok].factor_1_effect) <= {"升高", "降低"} and set(b[ok].factor_1_effect) <= {
        "raises",
        "lowers",
    }
    assert (a.probability.fillna(-1) == b.probability.fillna(-1)).all()
    # most of a random sample is not in the relapse cohort: warned, still scored
    warned = b[b.warning.fillna("").str.contains("not in the relapse cohort")]
    assert len(warned) > 100 and (warned.status == "ok").all()
    failed = score_roster(
        served, str(d / "roster.csv"), str(tmp_path / "f.csv"), "--fail-on-error", check=False
    )
    assert failed.returncode == 1
    assert (tmp_path / "f.csv").exists()  # the output is still complete


def test_explain_modes(served, roster, tmp_path):
    d, _ = roster
    none, top = tmp_path / "none.parquet", tmp_path / "top.parquet"
    score_roster(served, str(d / "roster.csv"), str(none), "--explain", "none")
    score_roster(served, str(d / "roster.csv"), str(top), "--explain", "top")
    full = tmp_path / "full.parquet"
    score_roster(served, str(d / "roster.csv"), str(full))
    n, t, f = pd.read_parquet(none), pd.read_parquet(top), pd.read_parquet(full)
    assert n.factor_1.isna().all() and n.probability.notna().sum() == len(n) - 3
    high = t.tier == "high"
    assert high.any() and t[high].factor_1.notna().all()
    assert t[t.tier.isin(["low", "medium"])].factor_1.isna().all()
    # the high tier's reasons are the ones a full explanation gives them
    reasons = ["factor_1", "factor_1_value", "factor_2", "factor_3_effect", "support"]
    pd.testing.assert_frame_equal(t.loc[high, reasons], f.loc[high, reasons])


def test_resume_after_kill_gives_the_same_file(served, tmp_path):
    persons = pd.read_parquet(served / "city" / "persons.parquet")
    big = tmp_path / "big.csv"
    dates = ("2025-01-01", "2024-07-01", "2024-01-01")
    rows = pd.concat([persons[["person_id"]].assign(as_of=d) for d in dates], ignore_index=True)
    rows.to_csv(big, index=False)

    def args(out: Path) -> list[str]:
        return [
            "score-roster",
            str(big),
            "--task",
            "relapse",
            "--out",
            str(out),
            "--data",
            "city",
            "--chunk-rows",
            "500",
        ]

    whole = tmp_path / "whole.csv"
    sunshine(served, *args(whole))
    out = tmp_path / "resumed.csv"
    parts = out.with_name(out.name + ".parts")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [SUNSHINE, *args(out)],
        cwd=served,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while len(list(parts.glob("part-*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("part-*.parquet")))
    assert 3 <= done < 24  # 12,000 rows in chunks of 500
    assert not out.exists()  # never a half-written final file
    r = sunshine(served, *args(out), "--resume")
    assert f"resumed: {done} chunk(s) already done" in " ".join(r.stdout.split())
    assert out.read_bytes() == whole.read_bytes()
    assert not parts.exists()


def test_roster_equals_the_api(served, roster, tmp_path):
    use_mlflow(served)
    d, frame = roster
    out = tmp_path / "scored.parquet"
    score_roster(served, str(d / "roster.csv"), str(out))
    scored = pd.read_parquet(out)
    tokens = TokenStore([])
    token = tokens.create("li", "analyst")
    state = build_state(Store(served / "city"), load_champions())
    app = create_app(state, tokens, AuditLog(tmp_path / "audit.db"), load_interventions())
    checked = 0
    with ServerThread(app) as server:
        for row in scored[scored.status == "ok"].head(25).itertuples():
            params = {"task": "relapse", "allow_out_of_cohort": str(not row.in_cohort).lower()}
            if row.as_of:
                params["as_of"] = row.as_of
            api = httpx.get(
                f"{server.url}/v1/persons/{row.person_id}/risk",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()
            assert row.probability == pytest.approx(api["probability"], abs=1e-9)
            assert row.tier == api["tier"]
            labels = [f["label_en"] for f in api["factors"][:3]]
            assert [row.factor_1, row.factor_2, row.factor_3][: len(labels)] == labels
            # support from the top 3 reasons, as the API's from its top 3
            raising = [f for f in api["factors"][:3] if f["contribution"] > 0]
            expected = []
            for f in raising:
                expected += [s["en"] for s in api["support"] if s["because"] == f["feature"]]
            assert row.support == "; ".join(dict.fromkeys(expected))
            checked += 1
    assert checked == 25
    # the run is in MLflow as a batch-inference run
    exp = MlflowClient().get_experiment_by_name("sunshine-batch-relapse")
    runs = mlflow.search_runs([exp.experiment_id])
    assert (runs["tags.kind"] == "batch-inference").all()
    assert "params.input_sha256" in runs and runs["metrics.rows"].max() >= len(frame)


def test_persons_outside_the_cohort_are_not_scored_by_default(served, roster, tmp_path):
    d, frame = roster
    default, zh = tmp_path / "default.csv", tmp_path / "zh.csv"
    score_roster(served, str(d / "roster.csv"), str(default), everyone=False)
    score_roster(served, str(d / "roster.csv"), str(zh), "--lang", "zh", everyone=False)
    everyone = tmp_path / "everyone.csv"
    score_roster(served, str(d / "roster.csv"), str(everyone))
    a, z, e = (pd.read_csv(p, encoding="utf-8-sig") for p in (default, zh, everyone))
    outside = a.status == "not_in_cohort"
    assert outside.sum() > 100 and (a.status == "ok").sum() > 0
    assert a[outside].probability.isna().all() and a[outside].tier.isna().all()
    assert (a[outside].in_cohort == False).all()  # noqa: E712
    assert (a[outside].warning == get_task("relapse").not_in_cohort("en")).all()
    assert z[outside].warning.str.startswith("不在社区康复期").all()
    # asked to include them: the same rows are scored, in_cohort false, with a warning
    assert (e[outside].status == "ok").all() and e[outside].probability.notna().all()
    assert e[outside].warning.str.contains("scored anyway").all()
    inside = a.status == "ok"
    assert (a[inside].in_cohort == True).all()  # noqa: E712
    assert (a[inside].probability == e[inside].probability).all()


def test_progress_total_counts_the_rows_of_every_format(roster):
    from serving.batch.runner import count_rows

    d, frame = roster
    for suffix in ("csv", "parquet", "xlsx"):
        assert count_rows(d / f"roster.{suffix}") == len(frame), suffix


def test_unusable_roster_is_a_clear_error(served, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nA,3\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    good = tmp_path / "good.csv"
    good.write_text("person_id\nP1\n")
    cases = [
        ((str(bad), str(tmp_path / "o.csv")), "no person_id column (found: name, age)"),
        ((str(empty), str(tmp_path / "o.csv")), "no person_id column"),
        ((str(tmp_path / "missing.csv"), str(tmp_path / "o.csv")), "no such roster"),
        ((str(good), str(tmp_path / "o.json")), "unsupported output format"),
        ((str(good), str(tmp_path / "o.csv"), "--lang", "fr"), "--lang must be one of zh, en"),
        ((str(good), str(tmp_path / "o.csv"), "--explain", "all"), "--explain must be one of"),
        # the run's own date is a flag: every row would be an error, so the run is refused
        (
            (str(good), str(tmp_path / "o.csv"), "--as-of", "2099-01-01"),
            "--as-of 2099-01-01: after the data's reference date",
        ),
    ]
    for args, message in cases:
        r = score_roster(served, *args, check=False)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("o.*"))


def test_a_roster_with_a_header_and_no_rows_gives_an_empty_output(served, tmp_path):
    src = tmp_path / "header_only.csv"
    src.write_text("person_id,站点\n", encoding="utf-8")
    for suffix in ("csv", "parquet", "xlsx"):
        out = tmp_path / f"scores.{suffix}"
        r = score_roster(served, str(src), str(out), check=False)
        assert r.returncode == 0, r.stderr
        frame = (
            pd.read_parquet(out)
            if suffix == "parquet"
            else (pd.read_csv(out, encoding="utf-8-sig") if suffix == "csv" else pd.read_excel(out))
        )
        assert len(frame) == 0 and list(frame.columns[:2]) == ["person_id", "站点"]
        assert "probability" in frame.columns


def _sizes(total: int, chunk: int) -> list[int]:
    from serving.batch.runner import _pieces

    roster = pd.DataFrame({"person_id": range(total)})
    chunks = (roster.iloc[i : i + chunk] for i in range(0, total, chunk))
    pieces = list(_pieces(chunks))
    assert pd.concat(pieces).equals(roster) if pieces else total == 0
    return [len(p) for p in pieces]


def test_pieces_cut_the_first_and_last_chunk():
    assert _sizes(100_000, 50_000) == [12_500, 37_500, 37_500, 12_500]
    assert _sizes(120, 50) == [12, 38, 50, 15, 5]
    assert _sizes(50_000, 50_000) == [12_500, 25_000, 12_500]
    assert _sizes(3, 50) == [3]
    assert _sizes(0, 50) == []


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.integers(1, 120))
def test_pieces_keep_every_row_once_in_order(total, chunk):
    sizes = _sizes(total, chunk)
    assert sum(sizes) == total and all(sizes)
    assert len(sizes) <= -(-total // chunk) + 2  # at most two extra cuts


def test_a_padded_id_is_scored_as_the_id_it_holds_and_says_so(served, tmp_path):
    persons = pd.read_parquet(served / "city" / "persons.parquet").person_id.tolist()
    src = tmp_path / "padded.csv"
    pd.DataFrame({"person_id": [persons[0], f" {persons[1]} "]}).to_csv(src, index=False)
    out = tmp_path / "scored.csv"
    score_roster(served, str(src), str(out))
    rows = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert rows.status.tolist() == ["ok", "ok"]
    assert "surrounding spaces" not in rows.warning[0]
    assert rows.warning[1].startswith("person_id: surrounding spaces removed; not in the")
