"""`sunshine demo`: the main job on the embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features import cli as features_cli
from features.core import cli
from features.core.errors import RegistryError
from features.core.settings import SERVICE_DB, settings
from features.storage.store import Store
from features.synth.city import synthesize, write_population
from features.tasks import task_names
from serving.access.passwords import Passwords
from serving.access.tokens import TokenStore
from serving.storage.web_records import WebStore

DEMO_DISTRICTS = ("huaxi", "nanming")


def register(app: typer.Typer) -> None:
    app.command()(demo)


@cli.user_errors
def demo(
    out: Annotated[Path, typer.Option(help="working directory for the demo")] = Path("demo-data"),
    persons: Annotated[int, typer.Option(help="synthetic persons", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """The main job on embedded defaults: synthesize, validate, build features, train, promote,
    and monitor each champion once (so the programme page shows a verdict from the start)."""
    from models.monitoring import monitor
    from models.registry import promote
    from models.tracking import configure
    from models.training_run import train_task

    configure()
    data = out / "registry"
    pop = synthesize(persons, seed)
    write_population(pop, data, seed)
    cli.console.print(
        f"synthesized {pop.persons.num_rows:,} persons, {pop.events.num_rows:,} events -> {data}"
    )
    store = Store(data)
    features_cli.print_report(store.report)
    for task in task_names():
        features_cli.build_and_write(store, task, out / f"features_{task}.parquet", None)
    for task in task_names():
        train_task(data, task, ceiling=True)
        decision = promote(task)
        for shown in decision.warnings:
            cli.console.print(shown, style="yellow")
        cli.console.print(
            f"sunshine-{task}: version {decision.version} "
            + (
                "promoted to champion"
                if decision.promoted
                else "kept as challenger: " + "; ".join(decision.reasons)
            )
        )
    for task in task_names():
        try:
            result, _ = monitor(store, task, out / f"monitor_{task}")
        except RegistryError as exc:  # no champion: the line above said why
            cli.console.print(f"sunshine-{task}: not monitored ({exc})", style="yellow")
            continue
        cli.console.print(
            f"sunshine-{task}: monitoring {result.status}"
            + (": " + "; ".join(result.reasons) if result.reasons else "")
            + f" ({out / f'monitor_{task}' / 'report.html'})",
            soft_wrap=True,
            highlight=False,
        )
    cli.console.print(
        f"MLflow runs and models: {settings().mlflow_uri} (browse with `make mlflow-ui`)",
        soft_wrap=True,
    )
    tokens = TokenStore.load()
    secret = tokens.create("demo-caseworker", "caseworker", list(DEMO_DISTRICTS), ["youth"], 7)
    tokens.save()
    code = Passwords(WebStore(settings().home / SERVICE_DB).engine).issue_code("demo-caseworker")
    person = demo_person(store)
    cli.console.print(
        f"\nServe it: `sunshine serve --data {data}` (or `make serve`). Then, as a caseworker "
        f"of {' and '.join(DEMO_DISTRICTS)} (with the youth scope; the token is valid 7 days):\n"
        f"  export TOKEN={secret}\n"
        '  curl -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:8000/v1/persons/{person}/risk?task=relapse'\n"
        f"  ({person} is in the relapse cohort on {store.reference_date}, in "
        f"{' or '.join(DEMO_DISTRICTS)})\n"
        "  and the web pages, as a caseworker signs in on a phone: open "
        "http://127.0.0.1:8000/app/setup, enter the user name demo-caseworker and the one-time "
        f"code {code} (valid 72 hours), choose a password, then sign in at "
        "http://127.0.0.1:8000/app/ with it (or with the token, under its fold)",
        soft_wrap=True,
        highlight=False,
    )


def demo_person(store: Store) -> str:
    """A person the demo's caseworker may read: in the relapse cohort on the reference date,
    living in one of the demo districts (the first by id, so every run names the same)."""
    from features.compute.labels import cohort_spine
    from features.tasks import get_task

    cohort = cohort_spine(store, get_task("relapse"), store.reference_date)
    lives = store.cursor().execute(
        "SELECT p.person_id FROM persons p JOIN residence h USING (pk) "
        f"WHERE h.district IN ({', '.join(repr(d) for d in DEMO_DISTRICTS)})"
    )
    here = {row[0] for row in lives.fetchall()}
    return str(min(set(cohort.person_id) & here))
