"""Shared helpers: tiny registries written to real CSV or Parquet files."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

# rich sizes its consoles when the CLI modules are imported: wide, so that no message is
# wrapped mid-word wherever the tests run (a terminal, a pipe, a pytest-xdist worker)
os.environ["COLUMNS"] = "200"
# Two test processes share two cores, and LightGBM's OpenMP threads spin while they wait for
# work by default: with both processes training at once, the spinning took a quarter of the
# CPU (tests/training/test_holdout.py beside tests/models/test_monitoring.py: 103 s, 77 s with
# this). Set before anything loads OpenMP; servers and commands the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REF = "2026-06-30"

PERSON_DEFAULTS = {
    "birth_date": "1990-01-01",
    "sex": "M",
    "district": "nanming",
    "ethnicity": "han",
    "registration_date": None,
    "primary_substance": None,
}


def write_dataset(
    root: Path,
    persons: list[dict],
    events: list[dict] | None,
    fmt: str = "csv",
    reference_date: str | None = REF,
) -> Path:
    """Write persons/events as `fmt`; rows given as dicts, persons filled from defaults."""
    root.mkdir(parents=True, exist_ok=True)
    p = pd.DataFrame([{**PERSON_DEFAULTS, **row} for row in persons])
    tables = {"persons": p}
    if events is not None:
        e = pd.DataFrame(
            events, columns=["person_id", "event_time", "event_type", "value", "detail"]
        )
        if any("recorded_time" in row for row in events):
            e["recorded_time"] = [row.get("recorded_time") for row in events]
        tables["events"] = e
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(root / f"{name}.csv", index=False)
        else:
            frame.to_parquet(root / f"{name}.parquet", index=False)
    if reference_date:
        (root / "dataset.json").write_text(json.dumps({"reference_date": reference_date}))
    return root


def ev(
    pid: str, time: str, etype: str, value: float | None = None, detail: str | None = None, **extra
) -> dict:
    return {
        "person_id": pid,
        "event_time": time,
        "event_type": etype,
        "value": value,
        "detail": detail,
        **extra,
    }


@pytest.fixture
def dataset(tmp_path: Path):
    def make(persons, events, **kw) -> Path:
        return write_dataset(tmp_path / "data", persons, events, **kw)

    return make


SMALL_CONFIG = """
task: {task}
as_of: {{first: 2021-07-01, last: {y1}-04-01}}
split:
  valid_start: {y3}-07-01
  test_start: {y1}-01-01
  rolling_test_starts: [{y2}-07-01, {y2}-10-01, {y1}-01-01]
lightgbm: {{learning_rate: 0.1, num_leaves: 7, max_depth: 4, min_child_samples: 30,
            n_estimators: 60, early_stopping_rounds: 15}}
capacity: 0.10
protected_attributes: [sex, ethnicity, age_band, district]
"""


def small_config(task: str, years_back: int = 0) -> str:
    """A fast training config for a test city; `years_back` moves its dates that many years
    earlier, for a registry as it stood before its reference date."""
    last = 2025 - years_back
    return SMALL_CONFIG.format(task=task, y1=last, y2=last - 1, y3=last - 2)


@contextlib.contextmanager
def mlflow_workspace(root: Path, persons: int, seed: int):
    """A synthetic city, fast task configs and a local MLflow store, in `root` as the cwd."""
    from features.synth.city import synthesize, write_population

    write_population(synthesize(persons, seed), root / "city", seed)
    for task in ("relapse", "youth_uptake"):
        text = small_config(task)
        if task == "youth_uptake":  # as the task's own default allows it
            text += "allowed_features: {age_band: 'prevention work is organised by age'}\n"
        (root / f"{task}.yaml").write_text(text)
    with workspace_at(root):
        yield root


@contextlib.contextmanager
def workspace_at(root: Path):
    """`root` as the cwd and its MLflow store as the tracking and registry store."""
    old = Path.cwd()
    os.chdir(root)
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        use_mlflow(root)
        yield root
    finally:
        os.chdir(old)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def trained_city(tmp_path_factory, name: str = "served") -> Path:
    """A copy of its own of the run's one trained city: 4,000 persons (seed 33), both tasks
    trained on the fast configs and promoted, in a local MLflow store. Trained once for the
    whole run: the first test process to ask builds it, under a lock, in the run's shared
    temporary folder, and each caller gets a copy in a new folder (its tests add versions and
    runs; the copies' MLflow stores read the models' artifacts where they were built)."""
    import fcntl
    import shutil

    from models.training_run import train_task

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built = shared / "served-built"
    with open(shared / "served.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            built.mkdir()
            with mlflow_workspace(built, 4000, 33) as root:
                for task in ("relapse", "youth_uptake"):
                    train_task(root / "city", task, root / f"{task}.yaml")
                    crown(task)
            (built / "done").touch()
    own = tmp_path_factory.mktemp(name)
    shutil.copytree(built, own, dirs_exist_ok=True, ignore=shutil.ignore_patterns("done"))
    return own


def forget(root: Path, *tasks: str) -> None:
    """Take `tasks`' registered models out of the MLflow store in `root`, for tests whose
    subject is a registry before those tasks were trained."""
    from mlflow.tracking import MlflowClient

    from models.registry import model_name

    use_mlflow(root)
    for task in tasks:
        MlflowClient().delete_registered_model(model_name(task))


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """Both tasks trained and promoted (`trained_city`), the process's own copy."""
    with workspace_at(trained_city(tmp_path_factory)) as root:
        yield root


def crown(task: str) -> None:
    """Make the task's challenger champion: through the gate, or, where the gate's only
    objection is the baselines (a small test city and a fast config often give a model no
    better than a logistic regression, which the gate rightly refuses), with --force and the
    reason said; any other objection fails the fixture."""
    from models.registry import promote

    decision = promote(task)
    if not decision.promoted:
        assert all("does not beat its baselines" in r for r in decision.reasons), decision
        decision = promote(task, force=True, reason="a test city too small to beat baselines")
    assert decision.promoted, decision.reasons


@pytest.fixture(scope="session")
def service(served, tmp_path_factory):
    """The API and the web pages over the `served` models, on a real uvicorn server, with a
    token per kind of user."""
    from benchmarks.servers import ServerThread
    from features.storage.store import Store
    from serving.access.audit import AuditLog
    from serving.access.tokens import TokenStore
    from serving.api.admission import Bound
    from serving.app import create_app
    from serving.scoring.interventions import load_interventions
    from serving.state.champions import load_champions
    from serving.state.service import build_state

    use_mlflow(served)
    tokens = TokenStore([])
    toks = {
        "cw_huaxi": tokens.create("wang", "caseworker", ["huaxi"]),
        "cw_youth": tokens.create("zhao", "caseworker", ["huaxi", "nanming"], ["youth"]),
        "analyst": tokens.create("li", "analyst"),
        "admin": tokens.create("root", "admin"),
    }
    audit_path = tmp_path_factory.mktemp("audit") / "audit.db"
    state = build_state(Store(served / "city"), load_champions())
    # many requests at once in some tests (the audit under concurrency, swaps under load):
    # their subject is not shedding, which tests/serving/test_overload.py tests, so no bound
    app = create_app(state, tokens, AuditLog(audit_path), load_interventions(), in_flight=Bound(0))
    with ServerThread(app) as server:
        yield {
            "url": server.url,
            "tokens": toks,
            "token_store": tokens,
            "state": state,
            "audit": audit_path,
            "service_db": audit_path.with_name("service.db"),
            "root": served,
        }


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session (on loopback, no UI) for the process's Spark tests; skipped
    with the reason where Spark or Java is missing, failed for it under CI=true."""
    from features.compute import spark as engine
    from features.core.errors import InputError

    os.environ["SUNSHINE_SPARK_PARTITIONS"] = "2"  # the tests' data is small
    # a short-lived JVM beside the other test process: quick compilation, one GC thread
    os.environ["JDK_JAVA_OPTIONS"] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    try:
        session = engine.session()
    except InputError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Spark: {exc}")
        pytest.skip(str(exc))
    # the tests' data is a few thousand rows: compiling each wide query to Java costs more
    # than running it interpreted (the same results; `make spark-cluster-check` and the
    # commands run with Spark's defaults)
    for key, value in (
        ("spark.sql.codegen.wholeStage", "false"),
        ("spark.sql.codegen.factoryMode", "NO_CODEGEN"),
        ("spark.sql.adaptive.enabled", "false"),
    ):
        session.conf.set(key, value)
    yield session
    session.stop()


def use_mlflow(root: Path) -> None:
    """Point MLflow at the store of a session fixture (several may be alive at once)."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


@pytest.fixture
def served_registry(served) -> Path:
    use_mlflow(served)
    return served


def sunshine(root: Path, *args: object, check: bool = True, env: dict | None = None):
    """`sunshine ARGS` in this process, in `root` as a user would run it there: the command
    and its store are the real ones, without a new interpreter's start-up each time. An
    exception that is not the command's own exit is raised, as a traceback would show it."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from serving.cli.main import app as cli

    old = Path.cwd()
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try:
        r = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})
    finally:
        os.chdir(old)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
        use_mlflow(root)
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    result = SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def until(check, timeout: float = 10.0) -> None:
    """Wait for `check()` to hold, failing the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def add_positive_tests(city: Path, person_id: str, reference) -> None:
    """Four positive urine tests in the month before `reference` for one person, added to a
    registry folder's events as an extract job would: written aside, then renamed over."""
    ref = pd.Timestamp(reference)
    events = pd.read_parquet(city / "events.parquet")
    positives = pd.DataFrame(
        {
            "person_id": person_id,
            "event_time": [ref - pd.Timedelta(days=d) for d in (3, 10, 17, 24)],
            "event_type": "urine_test",
            "value": 1.0,
            "detail": "heroin",
        }
    )
    tmp = city / "events.parquet.new"
    pd.concat([events, positives], ignore_index=True).to_parquet(tmp, index=False)
    os.replace(tmp, city / "events.parquet")


# The longest files first: `make test` hands whole files to two processes in collection order
# (`--no-loadscope-reorder`: xdist would otherwise order files by their number of tests), so a
# long file collected last would leave one process idle while the other finishes it. By the
# seconds each took in a run of the suite (`pytest --durations=0`), longest first.
LONGEST_FIRST = (
    # the first file of each process (xdist hands out two files each, in this order): one
    # builds the run's trained city (`trained_city`) while the other runs Spark, which needs
    # none, so neither waits for it
    "test_security.py",
    "test_spark.py",
    "test_training.py",
    "test_serving.py",
    "test_holdout.py",
    "test_monitoring.py",
    "test_workers.py",
    "test_batch.py",
    "test_ctn0094.py",
    "test_mlflow_server.py",
    "test_browser.py",
    "test_registry_db.py",
    "test_cli.py",
    "test_codebook.py",
    "test_task_registry.py",
    "test_no_lookahead.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))
