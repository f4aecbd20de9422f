"""Serving commands: serve the champions, materialize the state for several workers, and
migrate the service's own database."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features.core import cli
from features.store import Store
from serving.access.audit import DEFAULT_AUDIT_DB, open_audit
from serving.access.tokens import TokenStore
from serving.cli import indicators as indicators_cli
from serving.processes.sockets import listen
from serving.scoring.caseload import DEFAULT_RISING
from serving.storage.web_records import DEFAULT_SERVICE_DB, WebStore

if TYPE_CHECKING:
    pass


ServiceDbOpt = Annotated[
    Path,
    typer.Option(
        "--service-db", help="the web pages' sessions, language choices and follow-ups (SQLite)"
    ),
]
DEFAULT_STATE_DIR = "service-state"


db_app = typer.Typer(help="The service's own database.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command()(serve)
    app.command()(materialize)


@db_app.command("upgrade")
@cli.user_errors
def db_upgrade(
    service_db: ServiceDbOpt = Path(DEFAULT_SERVICE_DB),
) -> None:
    """Migrate the service's database to the newest schema: the database SUNSHINE_DATABASE_URL
    names (run once, before the services start), else the SQLite file."""
    from serving.storage.service_db import database_url, head, upgrade

    url = database_url(service_db)
    upgrade(url)
    where = url.split("@")[-1] if "@" in url else url
    cli.console.print(f"{where}: schema at {head()}")


@cli.user_errors
def serve(
    data: cli.DataOpt,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    audit_db: Annotated[Path, typer.Option("--audit-db", help="audit log (SQLite)")] = Path(
        DEFAULT_AUDIT_DB
    ),
    interventions: Annotated[
        Path | None, typer.Option(help="YAML: each task's support options")
    ] = None,
    lenient: cli.LenientOpt = False,
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
    from serving.scoring.interventions import load_interventions
    from serving.state.champions import load_champions
    from serving.state.heap import freeze_heap
    from serving.state.indicator_source import indicator_source
    from serving.state.refresh import Follower, watch_in_place
    from serving.state.service import build_state

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
        say = cli.console.print
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
        cli.err_console.print(
            "warning: no tokens yet; create one with `sunshine tokens create`", style="yellow"
        )
    for task in loaded.missing:
        cli.err_console.print(
            f"warning: no champion for {task}; its requests answer 503 until one is promoted "
            "and an admin calls POST /v1/admin/reload",
            style="yellow",
        )
    api = create_app(state, tokens, open_audit(audit_db), options, WebStore(service_db))
    if refresh_seconds:
        watch_in_place(api.state.services, refresh_seconds, lenient, cli.console.print).start()
    Follower(api.state.services, FOLLOW_S, say=cli.console.print).start()
    freeze_heap()
    versions = ", ".join(f"{t} v{f['version']}" for t, (_, f) in loaded.models.items())

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
        Path, typer.Option("--out", help="the state folder `serve --state-dir` reads")
    ] = Path(DEFAULT_STATE_DIR),
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

    configure()
    started = time.perf_counter()
    ensure_state(data, out, rising, lenient, cli.console.print, force)
    cli.console.print(f"({time.perf_counter() - started:.1f}s)")
