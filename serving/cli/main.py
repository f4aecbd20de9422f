"""The `sunshine` command: one root, on which every group of commands registers itself.

LightGBM, MLflow and the training stack are imported inside the commands that use them, so
`sunshine` starts, and reports a user's mistake, in about a second.
"""

from __future__ import annotations

import typer

from experiments import cli as experiments_cli
from features import cli as features_cli
from models import cli as models_cli
from models import effects_cli
from serving.cli import access, batch, demo, followups, indicators, service

app = typer.Typer(
    help="Sunshine Risk: relapse and youth-uptake risk scores for supportive intervention.",
    no_args_is_help=True,
    add_completion=False,
    # plain help, wrapped at the terminal's width: rich's boxed tables cut long flag names
    # short at 80 columns
    rich_markup_mode=None,
)
for group in (
    features_cli,
    models_cli,
    effects_cli,
    experiments_cli,
    indicators,
    service,
    batch,
    access,
    followups,
    demo,
):
    group.register(app)
