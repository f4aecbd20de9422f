"""Serving commands: serve the champions, materialize the state for several workers, and
migrate the service's own database."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features.core import cli
from features.core.settings import AUDIT_DB, SERVICE_DB, STATE_DIR
from features.storage.store import Store
from serving.access.audit import open_audit
from serving.access.tokens import TokenStore
from serving.api.admission import ENTER, INTERVAL_S, LEAST, MOST, STAY
from serving.cli import indicators as indicators_cli
from serving.processes.sockets import listen
from serving.state.caseload import DEFAULT_RISING
from serving.storage.web_records import WebStore

if TYPE_CHECKING:
    from serving.processes.workers import WorkerConfig

ServiceDbOpt = Annotated[
    Path | None,
    typer.Option(
        "--service-db",
        help="the web pages' sessions, language choices and follow-ups (SQLite; default "
        f"{SERVICE_DB} in the home)",
    ),
]


db_app = typer.Typer(help="The service's own database.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command()(serve)
    app.command()(materialize)


@db_app.command("upgrade")
@cli.user_errors
def db_upgrade(
    service_db: ServiceDbOpt = None,
) -> None:
    """Migrate the service's database to the newest schema: the database SUNSHINE_DATABASE_URL
    names (run once, before the services start), else the SQLite file."""
    from serving.storage.service_db import database_url, head, upgrade

    url = database_url(cli.in_home(service_db, SERVICE_DB))
    upgrade(url)
    where = url.split("@")[-1] if "@" in url else url
    cli.console.print(f"{where}: schema at {head()}")


@cli.user_errors
def serve(
    data: cli.DataOpt,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    audit_db: cli.AuditDbOpt = None,
    interventions: Annotated[
        Path | None, typer.Option(help="YAML: each task's support options")
    ] = None,
    lenient: cli.LenientOpt = False,
    service_db: ServiceDbOpt = None,
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
            f"materialized once into --state-dir (default {STATE_DIR} in the home) and every "
            "worker reads it",
        ),
    ] = 1,
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight",
            min=0,
            help="requests one worker works on at once while it has idle time; past that, "
            "503 with Retry-After (liveness and readiness are always answered); 0: no bound",
        ),
    ] = MOST,
    min_in_flight: Annotated[
        int,
        typer.Option(
            "--min-in-flight",
            min=1,
            help="the bound once the worker is saturated (more than --max-in-flight asked at "
            f"once, or work in hand {ENTER:.0%} of {2 * INTERVAL_S:g} s), until it is less "
            f"than {STAY:.0%} busy for {2 * INTERVAL_S:g} s",
        ),
    ] = LEAST,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="the materialized service state (generations; CURRENT names one)"
        ),
    ] = None,
) -> None:
    """Serve the registry's champion models over HTTP (uvicorn)."""
    from features.indicators.inputs import load_indicator_config, read_population
    from models.tracking import configure
    from serving.processes import workers as several
    from serving.scoring.interventions import load_interventions

    load_interventions(interventions)  # a mistake in a settings file fails before the slow start
    load_indicator_config(indicators_config)
    read_population(population)
    sock = listen(host, port)  # before the slow start, so a taken port fails at once
    configure(existing=True)

    def as_text(path: Path | None) -> str | None:
        return str(path.resolve()) if path else None

    cfg = several.WorkerConfig(
        data=data,
        state_dir=str(cli.in_home(state_dir, STATE_DIR).resolve()),
        audit_db=str(cli.in_home(audit_db, AUDIT_DB).resolve()),
        service_db=str(cli.in_home(service_db, SERVICE_DB).resolve()),
        rising=rising,
        interventions=as_text(interventions),
        indicators_config=as_text(indicators_config),
        population=as_text(population),
        external=as_text(external),
        max_in_flight=max_in_flight,
        min_in_flight=min_in_flight,
    )
    proxies = ",".join(trusted_proxy or [])
    if workers > 1 or state_dir is not None:
        say = cli.console.print
        several.prepare(cfg, lenient, say)
        if refresh_seconds:
            several.watch_registry(cfg, refresh_seconds, lenient, say).start()
        say(f"serving with {workers} workers on http://{host}:{port} (web pages at /app/)")
        several.run(cfg, workers, sock, proxies, say)  # the parent accepts, workers serve
        return
    _serve_in_process(cfg, sock, proxies, lenient, refresh_seconds)


def _serve_in_process(
    cfg: WorkerConfig, sock: socket.socket, proxies: str, lenient: bool, refresh_seconds: float
) -> None:
    """One process: build the state from the registry here and serve it with uvicorn."""
    import uvicorn

    from features.indicators.inputs import load_indicator_config, read_population
    from serving.app import create_app
    from serving.processes.refresh import Follower, watch_in_place
    from serving.processes.workers import FOLLOW_S
    from serving.scoring.interventions import load_interventions
    from serving.state.champions import load_champions
    from serving.state.heap import freeze_heap
    from serving.state.indicator_source import indicator_source
    from serving.state.service import build_state

    def path(text: str | None) -> Path | None:
        return Path(text) if text else None

    loaded = load_champions()
    store = Store(cfg.data, lenient=lenient)
    settings = load_indicator_config(path(cfg.indicators_config))
    people = read_population(path(cfg.population))
    source = indicator_source(store, settings, people, path(cfg.external))
    state = build_state(store, loaded, source, rising=cfg.rising)
    tokens = TokenStore.load()
    if not tokens.entries:
        cli.err_console.print(
            "warning: no tokens yet; create one with `sunshine tokens create`", style="yellow"
        )
    for task in loaded.missing:
        cli.err_console.print(
            f"warning: no champion for {task}; its requests answer 503 until one is promoted "
            "and an admin calls POST /v1/admin/reload",
            style="yellow",
        )
    options = load_interventions(path(cfg.interventions))
    audit, web = open_audit(Path(cfg.audit_db)), WebStore(Path(cfg.service_db))
    api = create_app(state, tokens, audit, options, web, cfg.in_flight)
    if refresh_seconds:
        watch_in_place(api.state.services, refresh_seconds, lenient, cli.console.print).start()
    Follower(api.state.services, FOLLOW_S, say=cli.console.print).start()
    freeze_heap()
    versions = ", ".join(f"{t} v{f['version']}" for t, (_, f) in loaded.models.items())
    host, port = sock.getsockname()[:2]

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # only now does a connection get an answer
                cli.console.print(
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


@cli.user_errors
def materialize(
    data: cli.DataOpt,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=f"the state folder `serve --state-dir` reads (default {STATE_DIR} in the home)",
        ),
    ] = None,
    lenient: cli.LenientOpt = False,
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

    configure(existing=True)
    started = time.perf_counter()
    ensure_state(data, cli.in_home(out, STATE_DIR), rising, lenient, cli.console.print, force)
    cli.console.print(f"({time.perf_counter() - started:.1f}s)")
