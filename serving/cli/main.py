"""The `sunshine` command: every layer registers its own subcommands here, at the top layer.

LightGBM, MLflow and the training stack are imported inside the commands that use them, so
`sunshine` starts, and reports a user's mistake, in about a second.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from experiments import cli as experiments_cli
from features import cli as features_cli
from features.core.errors import InputError
from features.core.io import atomic_path
from features.store import Store
from features.synth import synthesize, write_population
from features.tasks import task_names
from models import cli as models_cli
from serving.access.audit import DEFAULT_AUDIT_DB, AuditLog, open_audit
from serving.access.auth import DEFAULT_EXPIRY_DAYS, TokenStore
from serving.cli import indicators as indicators_cli
from serving.processes.sockets import listen
from serving.scoring.caseload import DEFAULT_RISING
from serving.storage.web_records import DEFAULT_SERVICE_DB, WebStore

if TYPE_CHECKING:
    import datetime as dt

    from features.tasks import SupportOption, Task
    from models.deployable import RiskModel
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer

DEMO_DISTRICTS = ("huaxi", "nanming")
ServiceDbOpt = Annotated[
    Path,
    typer.Option(
        "--service-db", help="the web pages' sessions, language choices and follow-ups (SQLite)"
    ),
]
DEFAULT_STATE_DIR = "service-state"

tokens_app = typer.Typer(help="Access tokens for the API.", no_args_is_help=True)
app = typer.Typer(
    help="Sunshine Risk: relapse and youth-uptake risk scores for supportive intervention.",
    no_args_is_help=True,
    add_completion=False,
)
features_cli.register(app)
models_cli.register(app)
experiments_cli.register(app)
indicators_cli.register(app)
app.add_typer(tokens_app, name="tokens")
followups_app = typer.Typer(help="Follow-ups recorded in the web pages.", no_args_is_help=True)
app.add_typer(followups_app, name="followups")
db_app = typer.Typer(help="The service's own database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@features_cli.user_errors
def db_upgrade(
    service_db: ServiceDbOpt = Path(DEFAULT_SERVICE_DB),
) -> None:
    """Migrate the service's database to the newest schema: the database SUNSHINE_DATABASE_URL
    names (run once, before the services start), else the SQLite file."""
    from serving.storage.service_db import database_url, head, upgrade

    url = database_url(service_db)
    upgrade(url)
    where = url.split("@")[-1] if "@" in url else url
    features_cli.console.print(f"{where}: schema at {head()}")


@app.command()
@features_cli.user_errors
def serve(
    data: features_cli.DataOpt,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    audit_db: Annotated[Path, typer.Option("--audit-db", help="audit log (SQLite)")] = Path(
        DEFAULT_AUDIT_DB
    ),
    interventions: Annotated[
        Path | None, typer.Option(help="YAML: each task's support options")
    ] = None,
    lenient: features_cli.LenientOpt = False,
    service_db: ServiceDbOpt = Path(DEFAULT_SERVICE_DB),
    rising: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="caseload: a rise in probability since last month that counts as rising "
            "(a move up a tier always does)",
        ),
    ] = DEFAULT_RISING,
    refresh_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="look for new registry data (changed files, new database rows) this often and "
            "swap in a state built from it "
            "without a restart (0: never)",
        ),
    ] = 60,
    population: indicators_cli.PopulationOpt = None,
    external: indicators_cli.ExternalOpt = None,
    indicators_config: indicators_cli.IndicatorConfigOpt = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="a reverse proxy's address whose X-Forwarded-For is believed (repeatable); "
            "without one, the client address is the connection's",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="worker processes; with more than one (or with --state-dir), the state is "
            f"materialized once into --state-dir (default {DEFAULT_STATE_DIR}) and every "
            "worker reads it",
        ),
    ] = 1,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="the materialized service state (generations; CURRENT names one)"
        ),
    ] = None,
) -> None:
    """Serve the registry's champion models over HTTP (uvicorn)."""
    import uvicorn

    from features.indicator_inputs import load_indicator_config, read_population
    from models.tracking import configure
    from serving.api.app import create_app
    from serving.processes.workers import FOLLOW_S
    from serving.scoring.scorer import load_interventions
    from serving.state.collector import settle
    from serving.state.refresh import Follower, watch_in_place
    from serving.state.service import build_state, indicator_source, load_champions

    options = load_interventions(interventions)
    settings = load_indicator_config(indicators_config)
    people = read_population(population)
    sock = listen(host, port)  # before the slow start, so a taken port fails at once
    configure()
    proxies = ",".join(trusted_proxy or [])
    if workers > 1 or state_dir is not None:
        from serving.processes import workers as several

        def as_text(path: Path | None) -> str | None:
            return str(path.resolve()) if path else None

        cfg = several.WorkerConfig(
            data=data,
            state_dir=str((state_dir or Path(DEFAULT_STATE_DIR)).resolve()),
            audit_db=str(audit_db.resolve()),
            service_db=str(service_db.resolve()),
            rising=rising,
            interventions=as_text(interventions),
            indicators_config=as_text(indicators_config),
            population=as_text(population),
            external=as_text(external),
        )
        say = features_cli.console.print
        several.prepare(cfg, lenient, say)
        if refresh_seconds:
            several.watch_registry(cfg, refresh_seconds, lenient, say).start()
        say(f"serving with {workers} workers on http://{host}:{port} (web pages at /app/)")
        several.run(cfg, workers, sock, proxies, say)  # the parent accepts, workers serve
        return
    loaded = load_champions()
    store = Store(data, lenient=lenient)
    state = build_state(
        store, loaded, indicator_source(store, settings, people, external), rising=rising
    )
    tokens = TokenStore.load()
    if not tokens.entries:
        features_cli.err_console.print(
            "warning: no tokens yet; create one with `sunshine tokens create`", style="yellow"
        )
    for task in loaded.missing:
        features_cli.err_console.print(
            f"warning: no champion for {task}; its requests answer 503 until one is promoted "
            "and an admin calls POST /v1/admin/reload",
            style="yellow",
        )
    api = create_app(state, tokens, open_audit(audit_db), options, WebStore(service_db))
    if refresh_seconds:
        watch_in_place(
            api.state.services, refresh_seconds, lenient, features_cli.console.print
        ).start()
    Follower(api.state.services, FOLLOW_S, say=features_cli.console.print).start()
    settle()
    versions = ", ".join(f"{t} v{f['version']}" for t, (_, f) in loaded.models.items())

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # only now does a connection get an answer
                features_cli.console.print(
                    f"serving {versions} on http://{host}:{port} "
                    f"(web pages at http://{host}:{port}/app/, API docs at /docs)"
                )

    config = uvicorn.Config(
        api,
        log_level="warning",
        workers=1,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    Announcing(config).run(sockets=[sock])


@app.command()
@features_cli.user_errors
def materialize(
    data: features_cli.DataOpt,
    out: Annotated[
        Path, typer.Option("--out", help="the state folder `serve --state-dir` reads")
    ] = Path(DEFAULT_STATE_DIR),
    lenient: features_cli.LenientOpt = False,
    rising: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="as `sunshine serve --rising`")
    ] = DEFAULT_RISING,
    force: Annotated[
        bool, typer.Option("--force", help="build a new generation even when it is up to date")
    ] = False,
) -> None:
    """Validate the registry and write the service's state once (features, caseloads) for
    `sunshine serve --workers N` to read; a state already built from this registry as it
    stands, for the same champions, is kept."""
    from models.tracking import configure
    from serving.state.materialize import ensure_state

    configure()
    started = time.perf_counter()
    ensure_state(data, out, rising, lenient, features_cli.console.print, force)
    features_cli.console.print(f"({time.perf_counter() - started:.1f}s)")


@tokens_app.command("create")
@features_cli.user_errors
def tokens_create(
    user: Annotated[str, typer.Option(help="who the token is for")],
    role: Annotated[str, typer.Option(help="caseworker, analyst or admin")],
    districts: Annotated[
        list[str] | None, typer.Option("--districts", help="a caseworker's districts, repeatable")
    ] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="extra scope: youth")] = None,
    expires: Annotated[int, typer.Option(help="days until it expires")] = DEFAULT_EXPIRY_DAYS,
) -> None:
    """Create an API token; it is printed once and only its hash is stored."""
    tokens = TokenStore.load()
    token = tokens.create(user, role, districts, scope, expires)
    tokens.save()
    entry = tokens.entries[-1]
    features_cli.err_console.print(
        f"token {entry.id} for {user} ({role}), valid until {entry.expires}, saved as a hash in "
        f"{tokens.where}"
    )
    print(token)


@tokens_app.command("list")
@features_cli.user_errors
def tokens_list(
    audit_db: Annotated[
        Path, typer.Option("--audit-db", help="audit log, for when each was last used")
    ] = Path(DEFAULT_AUDIT_DB),
    fmt: features_cli.FormatOpt = "table",
) -> None:
    """Every token: id, user, role, districts, scope, created, expires, status, last used.
    Never the secret."""
    from serving.storage.service_db import DATABASE_URL_ENV

    shared = bool(os.environ.get(DATABASE_URL_ENV))
    used = open_audit(audit_db).last_used() if shared or audit_db.exists() else {}
    tokens = TokenStore.load()
    features_cli.show_frame(pd.DataFrame(tokens.listing(used)), fmt, f"tokens in {tokens.where}")


@tokens_app.command("revoke")
@features_cli.user_errors
def tokens_revoke(
    token_id: Annotated[
        str | None, typer.Option("--id", help="the token's id (tokens list)")
    ] = None,
    user: Annotated[str | None, typer.Option(help="revoke every token of this user")] = None,
) -> None:
    """Revoke a token, or all of a user's; a running server refuses it within seconds."""
    tokens = TokenStore.load()
    revoked = tokens.revoke(token_id, user)
    tokens.save()
    for e in revoked:
        features_cli.console.print(f"revoked token {e.id} of {e.user} ({e.role})")


AuditDbOpt = Annotated[Path, typer.Option("--audit-db", help="audit log (SQLite)")]
audit_app = typer.Typer(
    help="The audit trail of API calls: query it, or verify its hash chain.",
    invoke_without_command=True,
)
app.add_typer(audit_app, name="audit")


def _existing_log(audit_db: Path) -> AuditLog:
    from serving.storage.service_db import DATABASE_URL_ENV

    if not os.environ.get(DATABASE_URL_ENV) and not audit_db.exists():
        raise InputError(f"{audit_db}: no audit log yet")
    return open_audit(audit_db)


@audit_app.callback()
@features_cli.user_errors
def audit_cmd(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="only this person_id")] = None,
    user: Annotated[str | None, typer.Option(help="only this user")] = None,
    since: Annotated[str | None, typer.Option(help="from this date (YYYY-MM-DD)")] = None,
    audit_db: AuditDbOpt = Path(DEFAULT_AUDIT_DB),
    fmt: features_cli.FormatOpt = "table",
) -> None:
    """Query the audit trail of risk requests, score calls and admin calls."""
    if ctx.invoked_subcommand is not None:
        return
    day = features_cli.parse_date(since, "--since") if since else None
    rows = _existing_log(audit_db).query(person, user, day)
    features_cli.show_frame(rows, fmt, f"audit: {len(rows)} entries")


@audit_app.command("verify")
@features_cli.user_errors
def audit_verify(audit_db: AuditDbOpt = Path(DEFAULT_AUDIT_DB)) -> None:
    """Check the hash chain: exit 1 naming the first deleted, inserted or altered row."""
    log = _existing_log(audit_db)
    # the trail as the operator knows it: its file, or its database (never with a password)
    where = log.url.split("@")[-1] if log.url else str(audit_db)
    verdict = log.verify()
    if verdict.intact:
        features_cli.console.print(
            f"{where}: {verdict.rows:,} entries, {verdict.reason}", soft_wrap=True
        )
        return
    features_cli.err_console.print(
        f"{where}: the chain breaks at row {verdict.broken_at}: {verdict.reason} "
        f"({verdict.rows:,} entries before it verified)",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


@followups_app.command("export")
@features_cli.user_errors
def followups_export(
    out: Annotated[Path, typer.Option(help="events file to write (.csv or .parquet)")],
    service_db: ServiceDbOpt = Path(DEFAULT_SERVICE_DB),
) -> None:
    """Every follow-up as a `support_offered` event of the data contract, for the next
    registry extract."""
    from serving.storage.service_db import DATABASE_URL_ENV

    if not os.environ.get(DATABASE_URL_ENV) and not service_db.exists():
        raise InputError(f"{service_db}: no such service database (see --service-db)")
    if out.suffix not in (".csv", ".parquet"):
        raise InputError(f"{out}: write .csv or .parquet")
    events = WebStore(service_db).followup_events()
    with atomic_path(out) as tmp:
        if out.suffix == ".csv":
            events.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        else:
            events.to_parquet(tmp, index=False)
    features_cli.console.print(f"{len(events):,} support_offered events -> {out}")


@app.command()
@features_cli.user_errors
def demo(
    out: Annotated[Path, typer.Option(help="working directory for the demo")] = Path("demo-data"),
    persons: Annotated[int, typer.Option(help="synthetic persons", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """The main job on embedded defaults: synthesize, validate, build features, train, promote."""
    from models.registry import promote
    from models.tracking import configure
    from models.training_run import train_task

    configure()
    data = out / "registry"
    pop = synthesize(persons, seed)
    write_population(pop, data, seed)
    features_cli.console.print(
        f"synthesized {pop.persons.num_rows:,} persons, {pop.events.num_rows:,} events -> {data}"
    )
    store = Store(data)
    features_cli.print_report(store.report)
    for task in task_names():
        features_cli.build_and_write(store, task, out / f"features_{task}.parquet", None)
    for task in task_names():
        train_task(data, task)
        decision = promote(task)
        for shown in decision.warnings:
            features_cli.console.print(shown, style="yellow")
        features_cli.console.print(
            f"sunshine-{task}: version {decision.version} "
            + (
                "promoted to champion"
                if decision.promoted
                else "kept as challenger: " + "; ".join(decision.reasons)
            )
        )
    features_cli.console.print(
        "MLflow runs and models: ./mlflow.db and ./mlartifacts (browse with `make mlflow-ui`)."
    )
    tokens = TokenStore.load()
    secret = tokens.create("demo-caseworker", "caseworker", list(DEMO_DISTRICTS), ["youth"], 7)
    tokens.save()
    features_cli.console.print(
        f"\nThe web pages: run `sunshine serve --data {data}` (`make serve`), open "
        "http://127.0.0.1:8000/app/ and sign in as a caseworker of "
        f"{' and '.join(DEMO_DISTRICTS)} (with the youth scope; valid 7 days) with this "
        f"token:\n{secret}",
        soft_wrap=True,
    )


# the options of both batch commands, score-roster and score-cohort
AsOfOpt = Annotated[str | None, typer.Option(help="default: the data's reference date")]
ModelVersionOpt = Annotated[str | None, typer.Option(help="a registered version")]
AliasOpt = Annotated[str, typer.Option(help="registry alias, if no --model-version")]
LangOpt = Annotated[str, typer.Option(help="factor and support labels: en or zh")]


@app.command("score-roster")
@features_cli.user_errors
def score_roster(
    roster: Annotated[Path, typer.Argument(help="CSV, Parquet or .xlsx with a person_id column")],
    task: Annotated[str, typer.Option(help="relapse or youth_uptake")],
    out: Annotated[Path, typer.Option(help="output .csv, .parquet or .xlsx")],
    data: features_cli.DataOpt,
    as_of: AsOfOpt = None,
    model_version: ModelVersionOpt = None,
    alias: AliasOpt = "champion",
    lang: LangOpt = "en",
    explain: Annotated[
        str, typer.Option(help="top3 (every row), top (high tier only), none")
    ] = "top3",
    resume: Annotated[bool, typer.Option(help="continue an interrupted run")] = False,
    fail_on_error: Annotated[bool, typer.Option(help="exit 1 if any row is an error")] = False,
    chunk_rows: Annotated[int, typer.Option(help="rows per chunk", min=100)] = 50_000,
    interventions: Annotated[Path | None, typer.Option(help="support options YAML")] = None,
    include_out_of_cohort: Annotated[
        bool,
        typer.Option(help="also score persons outside the task's cohort (with a warning)"),
    ] = False,
    engine: features_cli.EngineOpt = "duckdb",
    master: features_cli.MasterOpt = None,
) -> None:
    """Score a whole roster: one output row per input row, with reasons and support options.
    A person outside the task's cohort on as_of is not scored (status not_in_cohort) unless
    --include-out-of-cohort. On Spark, the registry's steps (look-up, cohort, features,
    scores and reasons) run on the executors, a chunk at a time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from features.tasks import get_task
    from serving.batch.job import RosterJob
    from serving.scoring.scorer import load_interventions

    get_task(task)
    features_cli.check_engine(engine, data)
    day = features_cli.parse_date(as_of, "--as-of") if as_of else None
    job = RosterJob(
        roster, task, out, day, lang, explain, resume, chunk_rows, include_out_of_cohort
    )
    options = load_interventions(interventions)[task]

    from models.registry import load_model
    from models.tracking import configure
    from serving.batch.runner import count_rows, log_batch_run

    configure()
    model, facts = load_model(task, alias=alias, version=model_version)
    console = features_cli.console
    with (
        _roster_scorer(engine, master, data, job, model, facts, options) as scorer,
        Progress(
            TextColumn("scoring"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        ) as bar,
    ):
        started = time.perf_counter()
        tid = bar.add_task("rows", total=count_rows(roster), rate="")

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(tid, advance=n, rate=f"{rate:,.0f} rows/s")

        summary = scorer.run(advance)
    log_batch_run(scorer, summary)
    console.print(
        f"wrote {summary.rows:,} rows to {out} and {out.with_suffix('.html')}"
        + (
            f" (resumed: {summary.chunks_skipped} chunk(s) already done)"
            if summary.chunks_skipped
            else ""
        )
    )
    table = features_cli.frame_table(
        "rows by status and tier",
        pd.DataFrame(
            [{"status": k, "rows": v} for k, v in sorted(summary.status.items())]
            + [{"status": f"tier {k}", "rows": v} for k, v in sorted(summary.tiers.items())]
        ),
    )
    console.print(table)
    by_district = pd.DataFrame(summary.districts).T.fillna(0).astype(int).sort_index()
    console.print(
        features_cli.frame_table("tiers by district", by_district.reset_index(names="district"))
    )
    if fail_on_error and summary.status.get("error"):
        raise typer.Exit(1)


@contextlib.contextmanager
def _roster_scorer(
    engine: str,
    master: str | None,
    data: str,
    job: RosterJob,
    model: RiskModel,
    facts: dict,
    options: tuple[SupportOption, ...],
) -> Iterator[RosterScorer]:
    """The roster run on the engine asked for (a Spark session lasts as long as the run)."""
    from serving.batch.runner import RosterScorer

    if engine != "spark":
        yield RosterScorer(job, Store(data), model, facts, options)
        return
    from features import spark
    from serving.batch.spark import SparkRosterScorer

    with spark.command_session(master) as session:
        registry = spark.SparkRegistry(session, Path(data))
        yield SparkRosterScorer(job, registry, model, facts, options)


@app.command("score-cohort")
@features_cli.user_errors
def score_cohort(
    task: Annotated[str, typer.Option(help="relapse or youth_uptake")],
    out: Annotated[Path, typer.Option(help="output .parquet (with --engine spark, a folder)")],
    data: features_cli.DataOpt,
    as_of: AsOfOpt = None,
    model_version: ModelVersionOpt = None,
    alias: AliasOpt = "champion",
    lang: LangOpt = "en",
    explain: Annotated[str, typer.Option(help="top3 (every row), top (high tier), none")] = "top3",
    interventions: Annotated[Path | None, typer.Option(help="support options YAML")] = None,
    engine: features_cli.EngineOpt = "duckdb",
    master: features_cli.MasterOpt = None,
) -> None:
    """Score everyone in the task's cohort on a date: the columns of score-roster, one row a
    person. On Spark, the executors score with the same model and reasons."""
    from features.tasks import get_task
    from models.registry import load_model
    from models.tracking import configure
    from serving.batch.job import EXPLAIN_MODES
    from serving.scoring.scorer import load_interventions

    t = get_task(task)
    if explain not in EXPLAIN_MODES:
        raise InputError(f"--explain must be one of {', '.join(EXPLAIN_MODES)}")
    if out.suffix != ".parquet":
        raise InputError(f"{out}: score-cohort writes Parquet (.parquet)")
    options = load_interventions(interventions)[task]
    day = features_cli.parse_date(as_of, "--as-of") if as_of else None
    configure()
    model, facts = load_model(task, alias=alias, version=model_version)
    started = time.perf_counter()
    if features_cli.check_engine(engine, data) == "spark":
        from features import spark
        from serving.batch.spark import score_cohort as on_spark

        with spark.command_session(master) as session:
            registry = spark.SparkRegistry(session, Path(data))
            day = day or registry.reference_date
            rows = on_spark(registry, t, day, model, facts, options, lang, explain, out)
    else:
        store = Store(data)
        day = day or store.reference_date
        rows = _score_cohort_here(t, store, day, model, facts, options, lang, explain, out)
    features_cli.console.print(
        f"{task}: scored {rows:,} persons in the cohort on {day} -> "
        f"{out} ({engine}, {time.perf_counter() - started:.1f}s)"
    )


def _score_cohort_here(
    task: Task,
    store: Store,
    day: dt.date,
    model: RiskModel,
    facts: dict,
    options: tuple[SupportOption, ...],
    lang: str,
    explain: str,
    out: Path,
) -> int:
    """The cohort as a roster, through the roster scorer: one machine, DuckDB."""
    from features.core.io import atomic_path
    from features.labels import cohort_spine
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer

    spine = cohort_spine(store, task, day)
    roster = out.with_name(f".{out.name}.cohort.parquet")
    try:
        with atomic_path(roster) as tmp:
            spine.to_parquet(tmp, index=False)
        job = RosterJob(roster, task.name, out, day, lang, explain)
        summary = RosterScorer(job, store, model, facts, options).run()
    finally:
        roster.unlink(missing_ok=True)
    return summary.rows
