"""The `sunshine` command: every layer registers its own subcommands here, at the top layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features import cli as features_cli
from features.labels import TASKS
from features.store import Store
from features.synth import synthesize, write_population
from models import cli as models_cli
from models.registry import promote
from training.tracking import configure

app = typer.Typer(
    help="Sunshine Risk: relapse and youth-uptake risk scores for supportive intervention.",
    no_args_is_help=True,
    add_completion=False,
)
features_cli.register(app)
models_cli.register(app)


@app.command()
@features_cli.user_errors
def demo(
    out: Annotated[Path, typer.Option(help="working directory for the demo")] = Path("demo-data"),
    persons: Annotated[int, typer.Option(help="synthetic persons", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """The main job on embedded defaults: synthesize, validate, build features, train, promote."""
    configure()
    data = out / "registry"
    pop = synthesize(persons, seed)
    write_population(pop, data, seed)
    features_cli.console.print(
        f"synthesized {pop.persons.num_rows:,} persons, {pop.events.num_rows:,} events -> {data}"
    )
    store = Store(data)
    features_cli.print_report(store.report)
    for task in TASKS:
        features_cli.build_and_write(store, task, out / f"features_{task}.parquet", None)
    for task in TASKS:
        models_cli.train_task(data, task)
        decision = promote(task)
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
