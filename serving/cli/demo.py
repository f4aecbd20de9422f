"""`sunshine demo`: the main job on the embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features import cli as features_cli
from features.core import cli
from features.store import Store
from features.synth import synthesize, write_population
from features.tasks import task_names
from serving.access.tokens import TokenStore

if TYPE_CHECKING:
    pass


DEMO_DISTRICTS = ("huaxi", "nanming")


def register(app: typer.Typer) -> None:
    app.command()(demo)


@cli.user_errors
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
    cli.console.print(
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
            cli.console.print(shown, style="yellow")
        cli.console.print(
            f"sunshine-{task}: version {decision.version} "
            + (
                "promoted to champion"
                if decision.promoted
                else "kept as challenger: " + "; ".join(decision.reasons)
            )
        )
    cli.console.print(
        "MLflow runs and models: ./mlflow.db and ./mlartifacts (browse with `make mlflow-ui`)."
    )
    tokens = TokenStore.load()
    secret = tokens.create("demo-caseworker", "caseworker", list(DEMO_DISTRICTS), ["youth"], 7)
    tokens.save()
    cli.console.print(
        f"\nThe web pages: run `sunshine serve --data {data}` (`make serve`), open "
        "http://127.0.0.1:8000/app/ and sign in as a caseworker of "
        f"{' and '.join(DEMO_DISTRICTS)} (with the youth scope; valid 7 days) with this "
        f"token:\n{secret}",
        soft_wrap=True,
    )
